"""FastAPI dependencies: who is calling (``PrincipalDep``) and admin-only (``AdminDep``).

Accepted credentials: ``X-Api-Key: <key>``, or ``Authorization: Bearer <JWT or API key>``.
Declared as security schemes so /docs offers an Authorize button.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from promptlooper.auth import service
from promptlooper.auth.cache import PrincipalCache
from promptlooper.auth.principal import Principal
from promptlooper.auth.tokens import looks_like_jwt
from promptlooper.errors import Unauthenticated

_api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT or API key")


async def get_principal(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    config: service.AuthConfig = request.app.state.auth_config
    token = api_key or (bearer.credentials if bearer else None)
    if not token:
        raise Unauthenticated("Not authenticated")
    principals: PrincipalCache = request.app.state.principals
    is_jwt = not api_key and looks_like_jwt(token)

    async def check() -> Principal:
        # A session of its own, opened only when the database must be asked: auth's bookkeeping
        # (a key's last use, the bootstrap user) is committed apart from the route's unit of
        # work, and a remembered key costs a route that needs no database no session at all.
        async with request.app.state.sessionmaker() as session:
            if is_jwt:
                found = await service.principal_from_jwt(session, config, token)
            else:
                found = await service.principal_from_api_key(session, config, token)
            await session.commit()
        return found

    if is_jwt:
        return await check()
    return await principals.resolve(token, check)


async def principal_of(request: Request) -> Principal:
    """``get_principal`` for a route served ahead of the router (``api/direct.py``), which
    solves no dependencies: the same credentials, read by the same schemes."""
    return await get_principal(request, await _api_key_header(request), await _bearer(request))


async def get_optional_principal(
    request: Request,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal | None:
    """Who is calling a public route that tells more to some: None without credentials;
    credentials that do not hold are refused as on any other route."""
    if not api_key and not bearer:
        return None
    return await get_principal(request, api_key, bearer)


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.ensure_admin()
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
