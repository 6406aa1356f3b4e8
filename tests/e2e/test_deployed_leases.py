"""No experiment gets stuck, with ``promptlooper serve`` as deployed: a server killed mid-sweep
leaves an experiment that a new server resumes, servers sharing a database agree on what runs,
and a template that raises fails its experiment. Leases of 2 s keep the waits short."""

from __future__ import annotations

import asyncio
import signal
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from promptlooper.db.engine import create_engine
from promptlooper.settings import Settings
from promptlooper.sweeps.models import Experiment
from tests.deployed import Deployed, finished_experiment, wait_for

LEASE = {"SWEEP_LEASE_SECONDS": "2"}


def sweep(rows: int = 30, prompt: str = "Classify: {{ input }}") -> dict[str, Any]:
    """4 configs × ``rows``, each call 40 ms, two at a time."""
    return {
        "name": "leases",
        "parameter_space": {
            "model": ["mock:small", "mock:large"],
            "prompt": [prompt, "B " + prompt],
        },
        "dataset": {"rows": [{"input": f"ticket {i}", "expected": "billing"} for i in range(rows)]},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": {"mock": {"latency_ms": 40}},
        "concurrency": 2,
    }


def create(server: Deployed, http: httpx.Client, document: dict[str, Any]) -> tuple[str, str]:
    project = http.post("/api/projects", json={"name": "leases"}, headers=server.admin)
    assert project.status_code == 201, project.text
    project_id = project.json()["id"]
    created = http.post(
        f"/api/projects/{project_id}/experiments", json=document, headers=server.admin
    )
    assert created.status_code == 201, created.text
    return project_id, created.json()["id"]


def get(server: Deployed, http: httpx.Client, experiment_id: str) -> dict[str, Any]:
    return http.get(f"/api/experiments/{experiment_id}", headers=server.admin).json()


def completed_at_least(server: Deployed, http: httpx.Client, experiment_id: str, n: int) -> Any:
    return lambda: get(server, http, experiment_id)["progress"]["completed"] >= n


def stored_status(database_url: str, experiment_id: str) -> str | None:
    """The status as the database holds it (not as a server shows it)."""

    async def read() -> str | None:
        url = Settings(_env_file=None, database_url=database_url).async_database_url  # type: ignore[call-arg]
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                query = select(Experiment.status).where(Experiment.id == uuid.UUID(experiment_id))
                return await conn.scalar(query)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_a_server_killed_mid_sweep_leaves_an_experiment_a_new_server_resumes(
    serve: Callable[..., Deployed], deployed_db: str
):
    first = serve(**LEASE)
    with first.client() as http:
        _, eid = create(first, http, sweep())
        http.post(f"/api/experiments/{eid}/start", headers=first.admin)
        wait_for(completed_at_least(first, http, eid, 5), what="runs to complete")
    first.stop(signal.SIGKILL)
    killed = time.monotonic()
    time.sleep(max(0.0, 2.5 - (time.monotonic() - killed)))  # its lease lapses meanwhile

    second = serve(**LEASE)
    marked = stored_status(deployed_db, eid)
    with second.client() as http:
        shown = get(second, http, eid)
        started = http.post(f"/api/experiments/{eid}/start", headers=second.admin)
        cancelled = http.post(f"/api/experiments/{eid}/cancel", headers=second.admin)
        after_cancel = get(second, http, eid)
        restarted = http.post(f"/api/experiments/{eid}/start", headers=second.admin)
        finished = finished_experiment(http, eid, second.admin)
        board = http.get(f"/api/experiments/{eid}/leaderboard", headers=second.admin).json()
        deleted = http.delete(f"/api/experiments/{eid}", headers=second.admin)

    assert marked == "interrupted"  # by the new server, as it started
    assert shown["status"] == "interrupted"
    assert "start resumes it" in shown["error"]
    assert 5 <= shown["progress"]["completed"] < 120
    assert started.json()["started"] is True
    assert cancelled.status_code == 202
    assert after_cancel["status"] == "cancelled"
    assert restarted.json()["started"] is True
    assert (finished["status"], finished["error"]) == ("completed", None)
    assert (finished["progress"]["completed"], finished["progress"]["failed"]) == (120, 0)
    assert sum(entry["runs"] for entry in board["data"]) == 120  # nothing ran twice
    assert deleted.status_code == 204


def test_servers_sharing_a_database_agree_on_what_runs(serve: Callable[..., Deployed]):
    one, two = serve(**LEASE), serve(**LEASE)
    with one.client() as on_one, two.client() as on_two:
        project_id, eid = create(one, on_one, sweep())
        on_one.post(f"/api/experiments/{eid}/start", headers=one.admin)
        wait_for(completed_at_least(two, on_two, eid, 3), what="runs to complete")
        shown = get(two, on_two, eid)
        start_again = on_two.post(f"/api/experiments/{eid}/start", headers=two.admin)
        delete = on_two.delete(f"/api/experiments/{eid}", headers=two.admin)
        delete_project = on_two.delete(f"/api/projects/{project_id}", headers=two.admin)
        cancel = on_two.post(f"/api/experiments/{eid}/cancel", headers=two.admin)
        time.sleep(1.5)  # server one sees its lease gone within a third of it
        halted = get(one, on_one, eid)
        time.sleep(1.0)
        still = get(one, on_one, eid)
        resumed = on_two.post(f"/api/experiments/{eid}/start", headers=two.admin)
        finished = finished_experiment(on_one, eid, one.admin)

    assert shown["status"] == "running"
    assert (start_again.status_code, start_again.json()["started"]) == (202, False)
    assert (delete.status_code, delete_project.status_code) == (409, 409)
    assert cancel.status_code == 202
    assert halted["status"] == still["status"] == "cancelled"
    assert halted["progress"]["completed"] == still["progress"]["completed"] < 120
    assert resumed.json()["started"] is True
    assert finished["progress"]["completed"] == 120


@pytest.mark.parametrize(
    ("template", "good", "bad", "error"),
    [
        (
            "{{ range(input | int) | length }}",
            "3",
            "1000000000",
            "template exceeded a limit: it makes a range of over 100,000 items",
        ),
        (
            "{% macro f(n) %}{{ f(n) if n else '' }}{% endmacro %}{{ f(input | int) }}",
            "0",
            "1",
            "template exceeded a limit: it recursed too deeply",
        ),
        ("{{ 1 // (input | int) }}", "1", "0", "template failed: ZeroDivisionError"),
    ],
)
def test_a_template_that_raises_in_the_runner_fails_its_runs_and_nothing_gets_stuck(
    serve: Callable[..., Deployed], template: str, good: str, bad: str, error: str
):
    """Issue 19, item 10: such a template used to leave its experiment ``running`` forever."""
    server = serve(**LEASE)
    document = {
        "name": "raising",
        "parameter_space": {"model": ["mock:small"], "prompt": [template]},
        "dataset": {"rows": [{"input": bad if i % 4 == 3 else good} for i in range(40)]},
        "scorers": [{"name": "short", "type": "length", "max": 100}],
        "providers": {"mock": {"latency_ms": 40}},
        "concurrency": 2,
    }
    with server.client() as http:
        _, eid = create(server, http, document)
        started = http.post(f"/api/experiments/{eid}/start", headers=server.admin)
        cancelled = http.post(f"/api/experiments/{eid}/cancel", headers=server.admin)
        after_cancel = get(server, http, eid)
        restarted = http.post(f"/api/experiments/{eid}/start", headers=server.admin)
        finished = finished_experiment(http, eid, server.admin, timeout=60)
        failed = http.get(f"/api/experiments/{eid}/runs?status=failed", headers=server.admin)
        again = http.post(f"/api/experiments/{eid}/start", headers=server.admin)
        finished_again = finished_experiment(http, eid, server.admin, timeout=60)
        deleted = http.delete(f"/api/experiments/{eid}", headers=server.admin)
        gone = http.get(f"/api/experiments/{eid}", headers=server.admin)

    assert started.json()["started"] is True
    assert cancelled.status_code == 202
    assert after_cancel["status"] == "cancelled"
    assert restarted.json()["started"] is True
    assert (finished["status"], finished["error"]) == ("completed", None)
    assert (finished["progress"]["completed"], finished["progress"]["failed"]) == (30, 10)
    assert {run["row_index"] % 4 for run in failed.json()["data"]} == {3}
    assert all(run["error"].startswith(error) for run in failed.json()["data"])
    assert again.json()["started"] is True
    assert finished_again["status"] == "completed"
    assert finished_again["progress"]["failed"] == 10
    assert deleted.status_code == 204
    assert gone.status_code == 404


def test_an_event_stream_opened_before_start_follows_the_sweep_to_its_end(
    serve: Callable[..., Deployed],
):
    server = serve(**LEASE)
    events: list[str] = []
    opened = threading.Event()
    with server.client() as http:
        _, eid = create(server, http, sweep(rows=3))

        def follow() -> None:
            url = f"/api/experiments/{eid}/events"
            with http.stream("GET", url, headers=server.admin, timeout=60) as response:
                for line in response.iter_lines():
                    if line.startswith("event: "):
                        events.append(line.removeprefix("event: "))
                        opened.set()

        follower = threading.Thread(target=follow)
        follower.start()
        assert opened.wait(30), "no progress snapshot"
        time.sleep(0.5)  # still open while the experiment is a draft
        open_while_draft = follower.is_alive()
        with server.client() as starter:
            starter.post(f"/api/experiments/{eid}/start", headers=server.admin)
        follower.join(60)

    assert open_while_draft
    assert not follower.is_alive()
    assert events[0] == "progress"
    assert "experiment.started" in events
    assert events.count("run.completed") == 12
    assert events[-1] == "experiment.completed"
