"""No experiment gets stuck: whatever fails ends it ``failed``, and whether it runs is the
database's lease to say, not one process's task table. (Servers killed for real, and two
servers on one database: ``tests/e2e/test_deployed_leases.py``.)"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from promptlooper.db.base import utcnow
from promptlooper.settings import Settings
from promptlooper.sweeps import execution
from promptlooper.sweeps import routes as sweep_routes
from promptlooper.sweeps.lease import Lease, mark_interrupted
from promptlooper.sweeps.models import Experiment
from tests.sweeps.conftest import ROWS, create, document, run_to_end


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """A lease of a second: a process notices a lost one within a third of that."""
    return settings.model_copy(update={"sweep_lease_seconds": 1.0})


def _slow(**changes) -> dict:
    doc = document(concurrency=2, **changes)
    doc["providers"]["mock"]["latency_ms"] = 30
    return doc


async def _get(client: httpx.AsyncClient, owner, eid: str) -> dict:
    return (await client.get(f"/api/experiments/{eid}", headers=owner.headers)).json()


async def _held_elsewhere(sessionmaker, eid: str, seconds: float = 30) -> Lease:
    """The lease another process (a server sharing the database) would hold."""
    lease = await Lease.acquire(sessionmaker, uuid.UUID(eid), seconds)
    assert lease is not None
    return lease


async def _lapse(sessionmaker, eid: str) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(Experiment)
            .where(Experiment.id == uuid.UUID(eid))
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
        await session.commit()


async def test_a_failure_after_the_experiment_is_marked_running_leaves_it_failed(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, monkeypatch: pytest.MonkeyPatch
):
    def broken(*_args, **_kwargs):
        raise RuntimeError("the cache lookup broke")

    monkeypatch.setattr(execution, "first_stage_key", broken)
    experiment = await create(client, owner, project_id, document())

    final = await run_to_end(client, app, owner, experiment["id"])
    deleted = await client.delete(f"/api/experiments/{experiment['id']}", headers=owner.headers)

    assert (final["status"], final["error"]) == ("failed", "RuntimeError: the cache lookup broke")
    assert deleted.status_code == 204


@pytest.mark.parametrize(
    ("prompt", "completed", "error"),
    [
        (
            "{{ input }} {{ 1 // (input | length - input | length) }}",
            0,
            "template failed: ZeroDivisionError",
        ),
        (  # 100,000 items for the first row, 10**6 and 10**10 for the others
            "{{ input }} {{ range(10 ** (30 - input | length)) | length }}",
            1,
            "template exceeded a limit: it makes a range of over 100,000 items",
        ),
    ],
)
async def test_a_template_that_raises_in_the_runner_fails_its_runs_only(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, prompt, completed, error
):
    doc = document(parameter_space={"model": ["mock:small"], "prompt": [prompt]})
    experiment = await create(client, owner, project_id, doc)

    final = await run_to_end(client, app, owner, experiment["id"])
    runs = await client.get(
        f"/api/experiments/{experiment['id']}/runs?status=failed", headers=owner.headers
    )
    again = await run_to_end(client, app, owner, experiment["id"])

    assert (final["status"], final["error"]) == ("completed", None)
    assert (final["progress"]["completed"], final["progress"]["failed"]) == (
        completed,
        3 - completed,
    )
    assert all(run["error"].startswith(error) for run in runs.json()["data"])
    assert again["status"] == "completed"  # started again: not stuck


def test_an_error_from_the_workers_is_recorded_as_what_they_raised():
    group = ExceptionGroup("unhandled errors in a TaskGroup", [ValueError("a"), KeyError("b")])

    assert execution.describe(ExceptionGroup("one", [OSError("down")])) == "OSError: down"
    assert execution.describe(group) == "ValueError: a (and 1 more)"
    assert execution.describe(RuntimeError("plain")) == "RuntimeError: plain"
    assert execution.describe(ExceptionGroup("x", [AssertionError()] * 4)) == (
        "AssertionError (and 3 more)"
    )


async def test_an_experiment_running_in_another_process_is_running_here_too(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    eid = (await create(client, owner, project_id, document()))["id"]
    elsewhere = await _held_elsewhere(sessionmaker, eid)

    shown = await _get(client, owner, eid)
    started = await client.post(f"/api/experiments/{eid}/start", headers=owner.headers)
    deleted = await client.delete(f"/api/experiments/{eid}", headers=owner.headers)
    project_deleted = await client.delete(f"/api/projects/{project_id}", headers=owner.headers)
    cancelled = await client.post(f"/api/experiments/{eid}/cancel", headers=owner.headers)
    after = await _get(client, owner, eid)

    assert shown["status"] == "running"
    assert (started.status_code, started.json()["started"]) == (202, False)
    assert deleted.status_code == 409
    assert project_deleted.status_code == 409
    assert "running; cancel them first" in project_deleted.text
    assert cancelled.status_code == 202
    assert after["status"] == "cancelled"
    assert await elsewhere.renew() is False  # the owner learns at its next heartbeat
    assert (await client.delete(f"/api/projects/{project_id}", headers=owner.headers)).status_code
    assert (await _get(client, owner, eid)) == {"detail": "Experiment not found"}


async def test_a_lapsed_lease_is_not_running(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    eid = (await create(client, owner, project_id, document()))["id"]
    elsewhere = await _held_elsewhere(sessionmaker, eid)
    await _lapse(sessionmaker, eid)

    shown = await _get(client, owner, eid)
    final = await run_to_end(client, app, owner, eid)

    assert shown["status"] == "interrupted"
    assert elsewhere.owner in shown["error"]
    assert "start resumes it" in shown["error"]
    assert (final["status"], final["progress"]["completed"]) == ("completed", 24)
    assert await elsewhere.renew() is False


async def test_a_lapsed_experiment_can_be_cancelled_or_deleted(
    client: httpx.AsyncClient, owner, project_id, sessionmaker
):
    first = (await create(client, owner, project_id, document()))["id"]
    second = (await create(client, owner, project_id, document()))["id"]
    for eid in (first, second):
        await _held_elsewhere(sessionmaker, eid)
        await _lapse(sessionmaker, eid)

    cancelled = await client.post(f"/api/experiments/{first}/cancel", headers=owner.headers)
    deleted = await client.delete(f"/api/experiments/{second}", headers=owner.headers)

    assert cancelled.status_code == 202
    assert (await _get(client, owner, first))["status"] == "cancelled"
    assert deleted.status_code == 204


async def test_starting_up_marks_lapsed_experiments_interrupted(
    client: httpx.AsyncClient, owner, project_id, sessionmaker
):
    lapsed = (await create(client, owner, project_id, document()))["id"]
    live = (await create(client, owner, project_id, document()))["id"]
    await _held_elsewhere(sessionmaker, lapsed)
    await _lapse(sessionmaker, lapsed)
    await _held_elsewhere(sessionmaker, live)

    async with sessionmaker() as session:
        marked = await mark_interrupted(session)
        await session.commit()
        rows = dict((await session.execute(select(Experiment.id, Experiment.status))).all())

    assert marked == 1
    assert rows == {uuid.UUID(lapsed): "interrupted", uuid.UUID(live): "running"}


async def test_an_execution_whose_lease_is_taken_away_stops(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    # Far more runs than finish before the renewal that notices, even on a busy machine: with
    # the cache off, each of the 960 waits for the provider (14 s at least).
    slow = _slow(dataset={"rows": ROWS * 40}, cache=False)
    eid = (await create(client, owner, project_id, slow))["id"]
    await client.post(f"/api/experiments/{eid}/start", headers=owner.headers)
    await asyncio.sleep(0.3)
    async with sessionmaker() as session:  # what a cancel through another server does
        await session.execute(
            update(Experiment)
            .where(Experiment.id == uuid.UUID(eid))
            .values(status="cancelled", lease_owner=None, lease_expires_at=None)
        )
        await session.commit()

    await asyncio.wait_for(app.state.sweep_jobs.wait(uuid.UUID(eid)), 30)
    stopped = await _get(client, owner, eid)

    assert stopped["status"] == "cancelled"
    assert stopped["progress"]["completed"] < 960


async def test_a_server_that_shuts_down_leaves_its_experiments_interrupted(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    eid = (await create(client, owner, project_id, _slow()))["id"]
    await client.post(f"/api/experiments/{eid}/start", headers=owner.headers)
    await asyncio.sleep(0.2)

    await app.state.sweep_jobs.shutdown()
    stopped = await _get(client, owner, eid)
    final = await run_to_end(client, app, owner, eid)

    assert stopped["status"] == "interrupted"
    assert stopped["error"] == "interrupted: the server running it stopped; start resumes it"
    assert (final["status"], final["progress"]["completed"]) == ("completed", 24)


async def test_the_event_stream_of_a_draft_waits_for_it_to_start_and_finish(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sweep_routes, "KEEPALIVE_SECONDS", 0.1)
    monkeypatch.setattr(sweep_routes, "CHECK_SECONDS", 0.05)
    eid = (await create(client, owner, project_id, _slow()))["id"]

    async def follow() -> str:
        url = f"/api/experiments/{eid}/events"
        return (await client.get(url, headers=owner.headers)).text

    following = asyncio.create_task(follow())
    await asyncio.sleep(0.5)
    await client.post(f"/api/experiments/{eid}/start", headers=owner.headers)
    text = await asyncio.wait_for(following, 30)
    events = [line.removeprefix("event: ") for line in text.splitlines() if line[:6] == "event:"]

    assert events[0] == "progress"
    assert '"status": "draft"' in text.split("\n\n")[0]
    assert ": keep-alive" in text.split("event: experiment.started")[0]
    assert events.count("run.completed") == 24
    assert events[-1] == "experiment.completed"
