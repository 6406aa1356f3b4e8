"""The response cache through the API: each project has its own, users see and clear only
theirs, admins may clear all, a start's cache choice sticks, and the bound holds."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ByteSize

from promptlooper.api import create_app
from promptlooper.settings import Settings
from tests.factories import Actor, make_actor
from tests.fakes.openai_server import FakeOpenAI, start
from tests.sweeps.conftest import ROWS, create, document, run_to_end


async def _project(client: httpx.AsyncClient, actor: Actor, name: str) -> str:
    response = await client.post("/api/projects", json={"name": name}, headers=actor.headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


async def _sweep(client: httpx.AsyncClient, app: FastAPI, actor: Actor, project: str) -> dict:
    experiment = await create(client, actor, project, document())
    return await run_to_end(client, app, actor, experiment["id"])


async def test_pointing_a_provider_at_another_deployment_misses_the_cache(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    first, second = FakeOpenAI(), FakeOpenAI()
    (first_runner, first_url), (second_runner, second_url) = await asyncio.gather(
        start(first), start(second)
    )

    async def sweep_at(url: str) -> dict:
        doc = document(
            parameter_space={"model": ["openai:small"], "prompt": ["Classify: {{ input }}"]},
            providers={"openai": {"base_url": url, "max_retries": 0}},
        )
        experiment = await create(client, owner, project_id, doc)
        return await run_to_end(client, app, owner, experiment["id"])

    try:
        runs = [await sweep_at(url) for url in (first_url, second_url, first_url)]
    finally:
        await asyncio.gather(first_runner.cleanup(), second_runner.cleanup())

    assert [r["progress"]["completed"] for r in runs] == [3, 3, 3]
    assert [r["progress"]["cached"] for r in runs] == [0, 0, 3]
    assert (first.requests, second.requests) == (3, 3)


async def test_projects_do_not_share_answers_and_users_see_and_clear_only_theirs(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, bootstrap_headers
):
    other = await make_actor(sessionmaker, "other")
    other_project = await _project(client, other, "theirs")
    first = await _sweep(client, app, owner, project_id)
    theirs = await _sweep(client, app, other, other_project)
    again = await _sweep(client, app, owner, project_id)

    mine = (await client.get("/api/cache", headers=owner.headers)).json()
    peeking = [
        await client.get(f"/api/cache?project_id={other_project}", headers=owner.headers),
        await client.delete(f"/api/cache?project_id={other_project}", headers=owner.headers),
        await client.get("/api/cache?all=true", headers=owner.headers),
        await client.delete("/api/cache?all=true", headers=owner.headers),
    ]
    cleared = (await client.delete("/api/cache", headers=other.headers)).json()
    after = (await client.get("/api/cache", headers=owner.headers)).json()
    other_after = (await client.get("/api/cache", headers=other.headers)).json()

    assert [e["progress"]["cached"] for e in (first, theirs, again)] == [0, 0, 24]
    assert (mine["entries"], mine["hits"], mine["total_entries"]) == (24, 24, 48)
    assert mine["bytes"] > 0
    assert [r.status_code for r in peeking] == [403] * 4
    assert cleared == {"removed": 24}
    assert (after["entries"], after["total_entries"]) == (24, 24)
    assert (other_after["entries"], other_after["total_entries"]) == (0, 24)


async def test_one_project_and_everything_are_explicit_scopes(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, bootstrap_headers
):
    second = await _project(client, owner, "second")
    await _sweep(client, app, owner, project_id)
    await _sweep(client, app, owner, second)
    other = await make_actor(sessionmaker, "other")
    await _sweep(client, app, other, await _project(client, other, "theirs"))

    one = (await client.get(f"/api/cache?project_id={second}", headers=owner.headers)).json()
    cleared_one = await client.delete(f"/api/cache?project_id={second}", headers=owner.headers)
    admin_own = (await client.get("/api/cache", headers=bootstrap_headers)).json()
    admin_any = await client.get(f"/api/cache?project_id={second}", headers=bootstrap_headers)
    both = await client.get(f"/api/cache?all=true&project_id={second}", headers=bootstrap_headers)
    everything = (await client.get("/api/cache?all=true", headers=bootstrap_headers)).json()
    cleared_all = (await client.delete("/api/cache?all=true", headers=bootstrap_headers)).json()
    empty = (await client.get("/api/cache?all=true", headers=bootstrap_headers)).json()

    assert (one["entries"], one["total_entries"]) == (24, 72)
    assert cleared_one.json() == {"removed": 24}
    assert admin_own["entries"] == 0  # an admin's own projects, unless asked for more
    assert (admin_any.status_code, admin_any.json()["entries"]) == (200, 0)
    assert both.status_code == 422
    assert "all: give a project or all, not both" in both.text
    assert everything["entries"] == everything["total_entries"] == 48
    assert cleared_all == {"removed": 48}
    assert (empty["entries"], empty["total_entries"], empty["bytes"]) == (0, 0, 0)


async def test_a_start_without_the_cache_is_remembered_by_the_next_start(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    doc = document(concurrency=2, dataset={"rows": ROWS * 4})
    doc["providers"]["mock"]["latency_ms"] = 30
    filled = await run_to_end(
        client, app, owner, (await create(client, owner, project_id, doc))["id"]
    )
    eid = (await create(client, owner, project_id, doc))["id"]

    await client.post(f"/api/experiments/{eid}/start", json={"cache": False}, headers=owner.headers)
    await asyncio.sleep(0.4)
    await client.post(f"/api/experiments/{eid}/cancel", headers=owner.headers)
    stopped = (await client.get(f"/api/experiments/{eid}", headers=owner.headers)).json()
    resumed = await run_to_end(client, app, owner, eid)  # a start that says nothing

    assert filled["progress"]["completed"] == 96
    assert stopped["status"] == "cancelled"
    assert 0 < stopped["progress"]["completed"] < 96
    assert resumed["progress"] == {"pending": 0, "completed": 96, "failed": 0, "cached": 0}


@pytest.fixture
async def bounded(settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(
        settings.model_copy(update={"cache_max_entries": 10, "cache_max_bytes": ByteSize(5000)})
    )
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield app, http
    await app.state.engine.dispose()


async def test_a_sweep_never_leaves_the_cache_past_its_bound(
    bounded: tuple[FastAPI, httpx.AsyncClient], owner, bootstrap_headers
):
    app, client = bounded
    project = await _project(client, owner, "bounded")

    finished = await _sweep(client, app, owner, project)
    stats = (await client.get("/api/cache", headers=owner.headers)).json()

    assert finished["progress"]["completed"] == 24
    assert 0 < stats["total_entries"] <= 10
    assert stats["total_bytes"] <= 5000
    assert (stats["max_entries"], stats["max_bytes"]) == (10, 5000)
