"""Project credentials: set (sealed), list, read and delete them, and open the ones a sweep
names. Access to a credential is access to its project; no function returns a secret except
``provider_access``, which hands it to the sweep's providers. The caller commits."""

from __future__ import annotations

import uuid

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.models import User
from promptlooper.auth.principal import Principal
from promptlooper.errors import Invalid, NotFound
from promptlooper.projects import service as projects
from promptlooper.sweeps.credentials.box import SecretBox
from promptlooper.sweeps.credentials.models import ProviderCredential
from promptlooper.sweeps.credentials.schemas import CredentialPublic
from promptlooper.sweeps.providers import Credential, ProviderAccess, ProviderPolicy
from promptlooper.sweeps.spec import SweepSpec


def _listing(project_id: uuid.UUID) -> Select[tuple[ProviderCredential, str | None]]:
    """The project's credentials, each with its creator's username."""
    return (
        select(ProviderCredential, User.username)
        .outerjoin(User, User.id == ProviderCredential.created_by_id)
        .where(ProviderCredential.project_id == project_id)
    )


def _public(credential: ProviderCredential, created_by: str | None) -> CredentialPublic:
    return CredentialPublic(
        name=credential.name,
        provider=credential.provider,
        created_by=created_by,
        created_at=credential.created_at,
        updated_at=credential.updated_at,
    )


async def _find(
    session: AsyncSession, project_id: uuid.UUID, name: str
) -> tuple[ProviderCredential, str | None]:
    row = (
        await session.execute(_listing(project_id).where(ProviderCredential.name == name))
    ).first()
    if row is None:
        raise NotFound(f"No credential named {name!r} in this project")
    return row[0], row[1]


async def set_credential(
    session: AsyncSession,
    principal: Principal,
    box: SecretBox,
    project_id: uuid.UUID,
    name: str,
    provider: str,
    secret: str,
) -> tuple[CredentialPublic, bool]:
    """Store the credential, or replace its provider and secret (a rotation); True when it
    is new."""
    await projects.get_project(session, principal, project_id)
    sealed = box.seal(secret)
    try:
        credential, created_by = await _find(session, project_id, name)
    except NotFound:
        credential = ProviderCredential(
            project_id=project_id,
            name=name,
            provider=provider,
            sealed=sealed,
            created_by_id=principal.user_id,
        )
        session.add(credential)
        await session.flush()
        return _public(credential, principal.username), True
    credential.provider = provider
    credential.sealed = sealed
    await session.flush()
    return _public(credential, created_by), False


async def list_credentials(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID
) -> list[CredentialPublic]:
    await projects.get_project(session, principal, project_id)
    rows = await session.execute(_listing(project_id).order_by(ProviderCredential.name))
    return [_public(credential, created_by) for credential, created_by in rows]


async def get_credential(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, name: str
) -> CredentialPublic:
    await projects.get_project(session, principal, project_id)
    return _public(*await _find(session, project_id, name))


async def delete_credential(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, name: str
) -> None:
    await projects.get_project(session, principal, project_id)
    credential, _ = await _find(session, project_id, name)
    await session.delete(credential)
    await session.flush()


async def provider_access(
    session: AsyncSession, policy: ProviderPolicy, project_id: uuid.UUID, spec: SweepSpec
) -> ProviderAccess:
    """What ``spec``'s providers may use as a sweep of ``project_id``: the policy's share for
    the project's owner (whoever creates or starts it), with the credentials it names opened.
    Only this project's credentials can be named."""
    wanted = {e.credential: n for n, e in spec.providers.items() if e.credential is not None}
    opened: dict[str, Credential] = {}
    if wanted:
        stored = await session.scalars(
            select(ProviderCredential).where(
                ProviderCredential.project_id == project_id,
                ProviderCredential.name.in_(wanted),
            )
        )
        for credential in stored:
            secret = policy.box.open(credential.sealed)
            if secret is None:
                raise Invalid(
                    f"providers.{wanted[credential.name]}.credential: {credential.name!r} was "
                    "sealed with another CREDENTIALS_KEY than this server's; set it again"
                )
            opened[credential.name] = Credential(credential.provider, secret)
    admin = await projects.owned_by_admin(session, project_id)
    return policy.access(admin=admin, credentials=opened)
