"""App-level behaviour: health, uniform errors, OpenAPI."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy.exc import OperationalError

from promptlooper.api import create_app
from promptlooper.settings import Settings


async def test_health_reports_database_without_redis(client: httpx.AsyncClient, db_url: str):
    response = await client.get("/api/health")

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["database"] == {"ok": True, "backend": db_url.split("+")[0]}
    assert body["redis"] == {"configured": False, "ok": None}
    assert body["ray"] == {"configured": False}


async def test_health_reports_reachable_redis(settings: Settings, redis_url: str):
    app = create_app(settings.model_copy(update={"redis_url": redis_url}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        body = (await client.get("/api/health")).json()
    await app.state.event_bus.close()
    await app.state.engine.dispose()

    assert body["status"] == "ok"
    assert body["redis"] == {"configured": True, "ok": True}


async def test_health_is_degraded_when_redis_is_down(settings: Settings):
    app = create_app(settings.model_copy(update={"redis_url": "redis://127.0.0.1:1/0"}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/health")
    await app.state.engine.dispose()

    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["redis"] == {"configured": True, "ok": False}


async def test_health_is_503_when_the_database_is_unreachable(tmp_path):
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url="postgresql://nobody@127.0.0.1:1/none",
        data_dir=tmp_path,
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/health")
    await app.state.engine.dispose()

    assert response.status_code == 503
    assert response.json()["database"]["ok"] is False


async def test_unknown_route_is_json_404(client: httpx.AsyncClient):
    response = await client.get("/api/nothing-here")

    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


async def test_wrong_method_is_json_405(client: httpx.AsyncClient):
    response = await client.put("/api/health")

    assert response.status_code == 405
    assert "detail" in response.json()


async def _failing_route(settings: Settings, error: Exception) -> httpx.Response:
    """What the app answers for a route that raises ``error``."""
    app = create_app(settings)

    @app.get("/api/boom")
    async def boom() -> None:
        raise error

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        response = await client.get("/api/boom")
    await app.state.engine.dispose()
    return response


async def test_unexpected_errors_are_a_json_500_without_internals(settings: Settings):
    response = await _failing_route(settings, RuntimeError("secret internals"))

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert "secret" not in response.text


async def test_a_database_failure_other_than_unstorable_text_is_still_a_500(settings: Settings):
    lost = OperationalError("SELECT 1", {}, Exception("connection lost to secret-host"))

    response = await _failing_route(settings, lost)

    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}


async def test_openapi_has_readable_operation_ids_and_security_schemes(app: FastAPI):
    schema = app.openapi()

    ids = [op["operationId"] for path in schema["paths"].values() for op in path.values()]
    assert "projects-create_project" in ids
    assert "auth-login" in ids
    assert len(ids) == len(set(ids))
    assert set(schema["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
