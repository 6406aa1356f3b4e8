"""Request bodies are bounded per route family (MAX_BODY_PUBLIC_BYTES for ingestion,
MAX_BODY_DOCUMENT_BYTES for sweep documents, MAX_BODY_BYTES elsewhere): 413 with a message
naming the limit, whether the length is declared or the body streams in chunks."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from promptlooper.api import create_app
from promptlooper.settings import Settings
from tests.online.conftest import (
    BROWSER,
    event,
    registry,  # noqa: F401 (fixture)
)

JSON = {"Content-Type": "application/json"}


async def _chunks(size: int, chunk: int = 64 << 10) -> AsyncIterator[bytes]:
    """A body of ``size`` bytes with no declared length: httpx sends it chunked."""
    for start in range(0, size, chunk):
        yield b" " * min(chunk, size - start)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("path", "setting", "limit"),
    [
        ("/api/experiments/event", "MAX_BODY_PUBLIC_BYTES", 512 << 10),
        ("/api/experiments/batch", "MAX_BODY_PUBLIC_BYTES", 512 << 10),
        (f"/api/projects/{uuid.uuid4()}/experiments", "MAX_BODY_DOCUMENT_BYTES", 8 << 20),
        (f"/api/agents/{uuid.uuid4()}/experiments", "MAX_BODY_DOCUMENT_BYTES", 8 << 20),
        ("/api/projects", "MAX_BODY_BYTES", 2 << 20),
        ("/api/training/runs", "MAX_BODY_BYTES", 2 << 20),
    ],
)
async def test_a_body_over_its_route_family_limit_is_413(
    client: httpx.AsyncClient,
    bootstrap_headers: dict[str, str],
    path: str,
    setting: str,
    limit: int,
    chunked: bool,
):
    size = limit + 1
    body = _chunks(size) if chunked else b" " * size
    response = await client.post(path, content=body, headers={**JSON, **bootstrap_headers})

    assert response.status_code == 413
    assert response.json() == {
        "detail": f"Request body too large: this route accepts at most {limit} bytes ({setting})"
    }
    assert response.headers["connection"] == "close"


async def test_bodies_within_the_limits_are_served(
    client: httpx.AsyncClient,
    bootstrap_headers: dict[str, str],
    registry,  # noqa: F811
):
    """A full batch fits the public limit; a sweep document may be larger than MAX_BODY_BYTES."""
    batch = json.dumps({"events": [event(event_id=f"e{i}") for i in range(1000)]})
    document = json.dumps({"name": "x", "padding": " " * (3 << 20)})

    accepted = await client.post("/api/experiments/batch", content=batch, headers=BROWSER)
    sweep = await client.post(
        f"/api/projects/{uuid.uuid4()}/experiments",
        content=document,
        headers={**JSON, **bootstrap_headers},
    )

    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["accepted"] == 1000
    assert sweep.status_code != 413  # it reached the route, which judged it
    assert sweep.status_code in (404, 422)


async def test_the_limits_are_settings(settings: Settings):
    app = create_app(settings.model_copy(update={"max_body_public_bytes": 100}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        small = await http.post("/api/experiments/event", content=b" " * 100, headers=JSON)
        large = await http.post("/api/experiments/event", content=b" " * 101, headers=JSON)
    await app.state.engine.dispose()

    assert small.status_code == 422  # read and judged: blank is not an event
    assert large.status_code == 413
    assert "at most 100 bytes" in large.json()["detail"]
