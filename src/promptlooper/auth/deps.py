"""FastAPI dependencies: who is calling (``PrincipalDep``) and admin-only (``AdminDep``).

Accepted credentials: ``X-Api-Key: <key>``, or ``Authorization: Bearer <JWT or API key>``.
Declared as security schemes so /docs offers an Authorize button.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from promptlooper.auth import service
from promptlooper.auth.principal import Principal
from promptlooper.auth.tokens import looks_like_jwt
from promptlooper.db.deps import SessionDep
from promptlooper.errors import Unauthenticated

_api_key_header = APIKeyHeader(name="X-Api-Key", auto_error=False)
_bearer = HTTPBearer(auto_error=False, bearerFormat="JWT or API key")


async def get_principal(
    request: Request,
    session: SessionDep,
    api_key: Annotated[str | None, Depends(_api_key_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    config: service.AuthConfig = request.app.state.auth_config
    if api_key:
        principal = await service.principal_from_api_key(session, config, api_key)
    elif bearer and bearer.credentials:
        token = bearer.credentials
        if looks_like_jwt(token):
            principal = await service.principal_from_jwt(session, config, token)
        else:
            principal = await service.principal_from_api_key(session, config, token)
    else:
        raise Unauthenticated("Not authenticated")
    # Auth's own bookkeeping (a key's last use, the bootstrap user) is committed here, before
    # the route does anything, so the route's unit of work starts clean.
    await session.commit()
    return principal


async def get_admin(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
    principal.ensure_admin()
    return principal


PrincipalDep = Annotated[Principal, Depends(get_principal)]
AdminDep = Annotated[Principal, Depends(get_admin)]
