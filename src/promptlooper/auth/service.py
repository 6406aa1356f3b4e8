"""Users, logins and API keys. Functions take a session; the caller commits."""

from __future__ import annotations

import hmac
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth import passwords, tokens
from promptlooper.auth.models import ApiKey, User
from promptlooper.auth.principal import AuthMethod, Principal
from promptlooper.db.base import utcnow
from promptlooper.db.upsert import insert_ignore
from promptlooper.errors import Conflict, NotFound, Unauthenticated

BOOTSTRAP_USERNAME = "system:bootstrap-admin"
"""The user that acts for the ``API_KEY`` setting. The colon keeps it out of the namespace of
usernames people can create."""

# Writing last_used_at on every request would turn reads into writes; a minute is precise enough.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    jwt_secret: str
    jwt_expire_minutes: int
    bootstrap_key: str | None


async def create_user(
    session: AsyncSession, username: str, password: str, *, is_admin: bool = False
) -> User:
    if await get_user_by_username(session, username) is not None:
        raise Conflict(f"Username {username!r} is already taken")
    user = User(
        username=username, password_hash=passwords.hash_password(password), is_admin=is_admin
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:  # a concurrent create won the race
        raise Conflict(f"Username {username!r} is already taken") from exc
    return user


async def set_password(session: AsyncSession, user: User, password: str) -> None:
    user.password_hash = passwords.hash_password(password)
    await session.flush()


async def get_user_by_username(session: AsyncSession, username: str) -> User | None:
    return await session.scalar(select(User).where(User.username == username))


async def require_user(session: AsyncSession, username: str) -> User:
    user = await get_user_by_username(session, username)
    if user is None:
        raise NotFound(f"No user named {username!r}")
    return user


async def list_users(session: AsyncSession) -> list[User]:
    return list(await session.scalars(select(User).order_by(User.created_at, User.username)))


async def login(session: AsyncSession, config: AuthConfig, username: str, password: str) -> str:
    """A JWT for valid credentials. Unknown users and wrong passwords fail alike."""
    user = await get_user_by_username(session, username)
    if user is None or user.password_hash is None:
        passwords.verify_password(passwords.dummy_hash(), password)
        raise Unauthenticated("Invalid username or password")
    if not passwords.verify_password(user.password_hash, password) or not user.is_active:
        raise Unauthenticated("Invalid username or password")
    if passwords.needs_rehash(user.password_hash):
        await set_password(session, user, password)
    return tokens.issue_access_token(user.id, config.jwt_secret, config.jwt_expire_minutes)


def _principal(user: User, method: AuthMethod) -> Principal:
    return Principal(user_id=user.id, username=user.username, is_admin=user.is_admin, method=method)


async def principal_from_jwt(session: AsyncSession, config: AuthConfig, token: str) -> Principal:
    user_id = tokens.decode_access_token(token, config.jwt_secret)
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise Unauthenticated("Invalid token")
    return _principal(user, "jwt")


async def principal_from_api_key(session: AsyncSession, config: AuthConfig, key: str) -> Principal:
    """Resolve a user's API key or the bootstrap ``API_KEY``; flushes a stale last_used_at."""
    if config.bootstrap_key and hmac.compare_digest(key.encode(), config.bootstrap_key.encode()):
        return _principal(await bootstrap_user(session), "bootstrap_key")
    found = (
        await session.execute(  # one round trip for the key and its user: every request asks
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == tokens.api_key_hash(key))
        )
    ).first()
    if found is None:
        raise Unauthenticated("Invalid API key")
    api_key, user = found
    if api_key.revoked_at is not None or not user.is_active:
        raise Unauthenticated("Invalid API key")
    now = utcnow()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        api_key.last_used_at = now
        await session.flush()
    return _principal(user, "api_key")


async def bootstrap_user(session: AsyncSession) -> User:
    """The built-in admin behind ``API_KEY``, created on first use so its work has an owner."""
    user = await get_user_by_username(session, BOOTSTRAP_USERNAME)
    if user is None:
        row = {"id": uuid.uuid4(), "username": BOOTSTRAP_USERNAME, "is_admin": True}
        row |= {"password_hash": None, "is_active": True, "created_at": utcnow()}
        await insert_ignore(session, User.__table__, [row])
        user = await require_user(session, BOOTSTRAP_USERNAME)
    return user


async def create_api_key(
    session: AsyncSession, user_id: uuid.UUID, name: str
) -> tuple[ApiKey, str]:
    """A new key and its plaintext, which is never stored and cannot be shown again."""
    raw = tokens.generate_api_key()
    api_key = ApiKey(
        user_id=user_id,
        name=name,
        prefix=tokens.api_key_prefix(raw),
        key_hash=tokens.api_key_hash(raw),
    )
    session.add(api_key)
    await session.flush()
    return api_key, raw


async def list_api_keys(session: AsyncSession, user_id: uuid.UUID) -> list[ApiKey]:
    query = (
        select(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None))
        .order_by(ApiKey.created_at)
    )
    return list(await session.scalars(query))


async def revoke_api_key(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> None:
    api_key = await session.get(ApiKey, key_id)
    # Someone else's key answers like a missing one: key ids are not for probing.
    if (
        api_key is None
        or api_key.revoked_at is not None
        or not principal.can_access(api_key.user_id)
    ):
        raise NotFound("API key not found")
    api_key.revoked_at = utcnow()
    await session.flush()
