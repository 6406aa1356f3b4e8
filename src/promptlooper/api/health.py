"""``GET /api/health``: public liveness with database, Redis and Ray cluster reachability.

Anyone may ask whether the server is up; what its Ray cluster looks like (its address, nodes,
the actors and batches PromptLooper has on it) is for admins, who send their credentials with
the same request: a cluster's addresses are no business of an anonymous caller.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from promptlooper import __version__
from promptlooper.auth.deps import get_optional_principal
from promptlooper.auth.principal import Principal

router = APIRouter(tags=["health"])

RAY_TIMEOUT = 20.0
"""How long an admin's health check waits for the Ray cluster (joining it takes seconds)."""


async def _database_ok(request: Request) -> bool:
    try:
        async with request.app.state.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


async def _ray(address: str, admin: bool) -> dict[str, Any]:
    """The Ray section: whether a cluster is configured and joined; for an admin, the cluster
    itself, or why it could not be read."""
    if not address:
        return {"configured": False}
    try:
        from promptlooper import raycluster
        from promptlooper.sweeps.engine import distributed
    except ImportError:
        found: dict[str, Any] = {"configured": True, "connected": False}
        if admin:
            found.update(
                address=address, error="Ray is not installed: pip install 'promptlooper[ray]'"
            )
        return found
    if not admin:
        return {"configured": True, "connected": raycluster.joined()}
    try:
        status = await asyncio.wait_for(
            asyncio.to_thread(distributed.cluster_status, address), RAY_TIMEOUT
        )
    except TimeoutError:
        error = f"the Ray cluster did not answer within {RAY_TIMEOUT:g} s"
        return {
            "configured": True,
            "connected": raycluster.joined(),
            "address": address,
            "error": error,
        }
    except Exception as exc:  # whatever the cluster does, health answers
        return {
            "configured": True,
            "connected": raycluster.joined(),
            "address": address,
            "error": str(exc),
        }
    return {"configured": True, "connected": True, "error": None, **status}


@router.get("/api/health")
async def health(
    request: Request, principal: Annotated[Principal | None, Depends(get_optional_principal)]
) -> JSONResponse:
    """200 when the database answers (``degraded`` if a configured Redis does not), else 503.
    With an admin's credentials, the Ray section has the cluster's details."""
    bus = request.app.state.event_bus
    db_ok = await _database_ok(request)
    redis_ok = await bus.ping() if bus.redis_enabled else None
    admin = principal is not None and principal.is_admin
    body: dict[str, Any] = {
        "status": "ok" if db_ok and redis_ok is not False else "degraded",
        "version": __version__,
        "database": {"ok": db_ok, "backend": request.app.state.engine.dialect.name},
        "redis": {"configured": bus.redis_enabled, "ok": redis_ok},
        "ray": await _ray(request.app.state.settings.ray_address, admin),
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)
