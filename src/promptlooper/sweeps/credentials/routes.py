"""``/api/projects/{project_id}/credentials``: a project's provider credentials."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Request, Response, status

from promptlooper.auth.deps import PrincipalDep
from promptlooper.db.deps import SessionDep
from promptlooper.sweeps.credentials import service
from promptlooper.sweeps.credentials.schemas import CredentialList, CredentialPublic, CredentialSet
from promptlooper.sweeps.spec import CredentialName

router = APIRouter(prefix="/api/projects/{project_id}/credentials", tags=["credentials"])

NamePath = Annotated[CredentialName, Path(description="letters, digits, '_', '.', '-'")]


@router.put("/{name}", responses={201: {"model": CredentialPublic}})
async def set_credential(
    project_id: uuid.UUID,
    name: NamePath,
    body: CredentialSet,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    session: SessionDep,
) -> CredentialPublic:
    """Store a provider key for this project's sweeps (``201``), or replace it (``200``).
    The secret is sealed at rest and no read ever returns it."""
    credential, created = await service.set_credential(
        session,
        principal,
        request.app.state.provider_policy.box,
        project_id,
        name,
        body.provider,
        body.secret.get_secret_value(),
    )
    await session.commit()
    if created:
        response.status_code = status.HTTP_201_CREATED
    return credential


@router.get("")
async def list_credentials(
    project_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> CredentialList:
    """Names, provider types, who created them and when; never a secret."""
    data = await service.list_credentials(session, principal, project_id)
    return CredentialList(data=data, count=len(data))


@router.get("/{name}")
async def get_credential(
    project_id: uuid.UUID, name: NamePath, principal: PrincipalDep, session: SessionDep
) -> CredentialPublic:
    return await service.get_credential(session, principal, project_id, name)


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_credential(
    project_id: uuid.UUID, name: NamePath, principal: PrincipalDep, session: SessionDep
) -> None:
    await service.delete_credential(session, principal, project_id, name)
    await session.commit()
