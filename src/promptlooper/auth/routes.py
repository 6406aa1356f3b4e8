"""``/api/auth``, ``/api/keys`` and admin-only ``/api/users``."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request, status

from promptlooper.auth import service
from promptlooper.auth.deps import AdminDep, PrincipalDep
from promptlooper.auth.ratelimit import LoginThrottle
from promptlooper.auth.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyList,
    ApiKeyPublic,
    LoginRequest,
    Me,
    TokenResponse,
    UserCreate,
    UserList,
    UserPublic,
)
from promptlooper.db.deps import SessionDep

router = APIRouter()


@router.post("/api/auth/login", tags=["auth"])
async def login(body: LoginRequest, request: Request, session: SessionDep) -> TokenResponse:
    """Exchange a username and password for a bearer JWT. Attempts are rate limited."""
    throttle: LoginThrottle = request.app.state.login_throttle
    await throttle.hit(request.client.host if request.client else "unknown", body.username)
    token = await service.login(
        session, request.app.state.auth_config, body.username, body.password
    )
    await session.commit()
    return TokenResponse(access_token=token)


@router.get("/api/auth/me", tags=["auth"])
async def me(principal: PrincipalDep) -> Me:
    return Me(
        id=principal.user_id,
        username=principal.username,
        is_admin=principal.is_admin,
        auth_method=principal.method,
    )


@router.post("/api/keys", status_code=status.HTTP_201_CREATED, tags=["api keys"])
async def create_api_key(
    body: ApiKeyCreate, principal: PrincipalDep, session: SessionDep
) -> ApiKeyCreated:
    """Create an API key for the caller. The response is the only time the key is shown."""
    api_key, raw = await service.create_api_key(session, principal.user_id, body.name)
    await session.commit()
    return ApiKeyCreated(id=api_key.id, name=api_key.name, prefix=api_key.prefix, key=raw)


@router.get("/api/keys", tags=["api keys"])
async def list_api_keys(principal: PrincipalDep, session: SessionDep) -> ApiKeyList:
    keys = await service.list_api_keys(session, principal.user_id)
    return ApiKeyList(data=[ApiKeyPublic.model_validate(k) for k in keys], count=len(keys))


@router.delete("/api/keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT, tags=["api keys"])
async def revoke_api_key(
    key_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> None:
    await service.revoke_api_key(session, principal, key_id)
    await session.commit()
    request.app.state.principals.clear()  # the key's holder may be remembered: not any more


@router.post("/api/users", status_code=status.HTTP_201_CREATED, tags=["users"])
async def create_user(body: UserCreate, _admin: AdminDep, session: SessionDep) -> UserPublic:
    user = await service.create_user(session, body.username, body.password, is_admin=body.is_admin)
    await session.commit()
    return UserPublic.model_validate(user)


@router.get("/api/users", tags=["users"])
async def list_users(_admin: AdminDep, session: SessionDep) -> UserList:
    users = await service.list_users(session)
    return UserList(data=[UserPublic.model_validate(u) for u in users], count=len(users))
