"""The server under load, as deployed: on SQLite, the embedded default, public events arrive
while a large sweep writes its runs, and every one is accepted and stored."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.deployed import Deployed, finished_experiment

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0"}
ONLINE = {
    "experiment_key": "load",
    "name": "Load",
    "cookie_name": "exp_load",
    "eligible_routes": ["/"],
    "variants": [
        {"variant_key": "control", "allocation": 50, "is_control": True},
        {"variant_key": "other", "allocation": 50},
    ],
}
EVENTS = 100

sqlite_only = pytest.mark.parametrize("deployed_db", ["sqlite"], indirect=True)


def large_sweep(rows: int) -> dict[str, Any]:
    """4 configs × ``rows`` runs on the offline provider, 64 at a time: the sink commits
    every few milliseconds."""
    return {
        "name": "load",
        "parameter_space": {
            "model": ["mock:small", "mock:large"],
            "prompt": ["Classify: {{ input }}", "Label: {{ input }}"],
        },
        "dataset": {"rows": [{"input": f"ticket {i}", "expected": "billing"} for i in range(rows)]},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": {"mock": {"latency_ms": 1}},
        "concurrency": 64,
        "cache": False,
    }


def create_sweep(server: Deployed, http: httpx.Client, document: dict[str, Any]) -> str:
    project = http.post("/api/projects", json={"name": "load"}, headers=server.admin)
    assert project.status_code == 201, project.text
    created = http.post(
        f"/api/projects/{project.json()['id']}/experiments", json=document, headers=server.admin
    )
    assert created.status_code == 201, created.text
    return created.json()["id"]


@sqlite_only
def test_public_events_are_all_stored_while_a_large_sweep_writes(
    serve: Callable[..., Deployed],
):
    server = serve()
    with server.client() as http:
        registered = http.post("/api/admin/experiments", json=ONLINE, headers=server.admin)
        assert registered.status_code == 201, registered.text
        experiment_id = create_sweep(server, http, large_sweep(rows=1500))
        started = http.post(f"/api/experiments/{experiment_id}/start", headers=server.admin)
        assert started.status_code == 202, started.text

        def send(i: int) -> tuple[int, Any]:
            event = {
                "experiment_key": "load",
                "variant_key": "control",
                "session_id": f"visitor-{i}",
                "event_name": "conversion",
                "path": "/",
                "value": 1,
                "event_id": f"event-{i}",  # as the browser script sends them
            }
            with server.client() as own:
                answer = own.post("/api/experiments/event", json=event, headers=BROWSER)
            return answer.status_code, answer.json() if answer.is_success else answer.text

        with ThreadPoolExecutor(16) as pool:
            answers = list(pool.map(send, range(EVENTS)))
        during = http.get(f"/api/experiments/{experiment_id}", headers=server.admin).json()
        finished = finished_experiment(http, experiment_id, server.admin, timeout=180)
        results = http.get(
            "/api/v1/experiments/results",
            params={"experiment_key": "load"},
            headers=server.admin,
        )

    assert during["status"] == "running", "the events did not arrive while the sweep wrote"
    assert [a for a in answers if a != (202, {"ok": True, "accepted": True})] == []
    assert finished["status"] == "completed", finished
    assert finished["progress"]["completed"] == 6000
    (report,) = results.json()
    counts = {v["variant_key"]: v["conversions"] for v in report["variants"]}
    assert counts == {"control": EVENTS, "other": 0}
