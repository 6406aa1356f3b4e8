"""``GET /api/health``: public liveness with database and Redis reachability."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from promptlooper import __version__

router = APIRouter(tags=["health"])


async def _database_ok(request: Request) -> bool:
    try:
        async with request.app.state.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False


@router.get("/api/health")
async def health(request: Request) -> JSONResponse:
    """200 when the database answers (``degraded`` if a configured Redis does not), else 503."""
    bus = request.app.state.event_bus
    db_ok = await _database_ok(request)
    redis_ok = await bus.ping() if bus.redis_enabled else None
    body: dict[str, Any] = {
        "status": "ok" if db_ok and redis_ok is not False else "degraded",
        "version": __version__,
        "database": {"ok": db_ok, "backend": request.app.state.engine.dialect.name},
        "redis": {"configured": bus.redis_enabled, "ok": redis_ok},
    }
    return JSONResponse(body, status_code=200 if db_ok else 503)
