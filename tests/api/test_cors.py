"""CORS: the public experiment routes and the A/B script answer the origins in CORS_ORIGINS
(preflights included), never with credentials; every other route answers no origin at all."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.api import create_app
from promptlooper.online.routes import BROWSER_PATHS
from promptlooper.settings import Settings
from tests.online.conftest import (
    BROWSER,
    event,
    registry,  # noqa: F401 (fixture)
)

SHOP = "https://shop.example"
BROWSER_ROUTES = [
    ("GET", "/api/experiments"),
    ("GET", "/api/experiments/homepage_hero_test/assignment?unit_id=u1"),
    ("POST", "/api/experiments/event"),
    ("POST", "/api/experiments/impression"),
    ("POST", "/api/experiments/batch"),
    ("GET", "/static/promptlooper-ab.js"),
]

Client = Callable[[list[str]], AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def cors_client(settings: Settings) -> Client:
    """``async with cors_client(["https://shop.example"]) as client`` on the test's database."""

    @asynccontextmanager
    async def make(origins: list[str]) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings.model_copy(update={"cors_origins": origins}))
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield http
        await app.state.engine.dispose()

    return make


def _preflight(origin: str, method: str = "POST") -> dict[str, str]:
    return {
        "Origin": origin,
        "Access-Control-Request-Method": method,
        "Access-Control-Request-Headers": "content-type",
    }


def _cors_headers(response: httpx.Response) -> dict[str, str]:
    return {k: v for k, v in response.headers.items() if k.startswith("access-control-")}


def test_the_browser_routes_are_the_public_experiment_routes():
    assert set(BROWSER_PATHS) == {
        "/api/experiments",
        "/api/experiments/{experiment_key}/assignment",
        "/api/experiments/event",
        "/api/experiments/impression",
        "/api/experiments/batch",
    }


@pytest.mark.parametrize(("method", "url"), BROWSER_ROUTES)
async def test_a_preflight_from_an_allowed_origin_is_answered_without_credentials(
    cors_client: Client, method: str, url: str
):
    async with cors_client([SHOP, "http://127.0.0.1:8080"]) as client:
        response = await client.options(url, headers=_preflight(SHOP, method))

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == SHOP
    assert method in response.headers["access-control-allow-methods"]
    assert "content-type" in response.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in response.headers


@pytest.mark.parametrize("origins", [[], [SHOP]], ids=["none configured", "another allowed"])
async def test_a_preflight_from_another_origin_is_refused(cors_client: Client, origins):
    async with cors_client(origins) as client:
        response = await client.options(
            "/api/experiments/event", headers=_preflight("https://evil.example")
        )

    assert response.status_code == 400
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-credentials" not in response.headers


async def test_answers_to_an_allowed_origin_carry_it(cors_client: Client, registry):  # noqa: F811
    async with cors_client([SHOP]) as client:
        listed = await client.get("/api/experiments", headers={"Origin": SHOP})
        sent = await client.post(
            "/api/experiments/event",
            json=event(variant_key="nope"),
            headers={**BROWSER, "Origin": SHOP, "Cookie": "pl_sid=abc"},
        )
        elsewhere = await client.get("/api/experiments", headers={"Origin": "https://evil.example"})

    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == SHOP
    assert "origin" in listed.headers["vary"].lower()
    assert sent.status_code == 202
    assert sent.headers["access-control-allow-origin"] == SHOP
    # a page elsewhere may read why its event was refused
    assert sent.headers["access-control-expose-headers"] == "X-Event-Rejected"
    assert "access-control-allow-credentials" not in sent.headers
    assert "access-control-allow-origin" not in elsewhere.headers


async def test_any_origin_with_a_star_and_still_no_credentials(cors_client: Client):
    async with cors_client(["*"]) as client:
        preflight = await client.options(
            "/api/experiments/impression", headers=_preflight("https://any.example")
        )
        listed = await client.get(
            "/api/experiments", headers={"Origin": "https://any.example", "Cookie": "a=b"}
        )

    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in preflight.headers
    assert listed.headers["access-control-allow-origin"] in ("*", "https://any.example")
    assert "access-control-allow-credentials" not in listed.headers


async def test_no_other_route_answers_another_origin(
    app: FastAPI, cors_client: Client, bootstrap_headers: dict[str, str]
):
    """Even with ``*``: an authenticated answer must never be readable by another site."""
    operations = [
        (method.upper(), path)
        for path, methods in app.openapi()["paths"].items()
        for method in methods
        if path not in BROWSER_PATHS
    ]
    leaks = []
    async with cors_client(["*", SHOP]) as client:
        for method, path in operations:
            url = re.sub(r"\{[^}]+\}", str(uuid.uuid4()), path)
            preflight = await client.options(url, headers=_preflight(SHOP, method))
            if _cors_headers(preflight) or preflight.status_code == 200:
                leaks.append(f"OPTIONS {path} -> {preflight.status_code}")
        for url in ("/api/projects", "/api/auth/me", "/api/health", "/"):
            answer = await client.get(url, headers={**bootstrap_headers, "Origin": SHOP})
            if _cors_headers(answer):
                leaks.append(f"GET {url}: {_cors_headers(answer)}")

    assert len(operations) > 20
    assert leaks == []
