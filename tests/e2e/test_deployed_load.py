"""The server under load, as deployed: on SQLite, the embedded default, public events arrive
while a large sweep writes its runs, and every one is accepted and stored; on either database,
the largest experiment allowed is created and prepared while the server keeps answering."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.deployed import Deployed, finished_experiment, wait_for

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
    """4 configs × ``rows`` runs of 50 ms on the offline provider, 16 at a time: the sink
    commits every few milliseconds, for at least ``rows`` / 80 seconds however fast the
    machine, so that events sent meanwhile arrive while it writes."""
    return {
        "name": "load",
        "parameter_space": {
            "model": ["mock:small", "mock:large"],
            "prompt": ["Classify: {{ input }}", "Label: {{ input }}"],
        },
        "dataset": {"rows": [{"input": f"ticket {i}", "expected": "billing"} for i in range(rows)]},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": {"mock": {"latency_ms": 50}},
        "concurrency": 16,
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


def slowest_health_while(server: Deployed, work: Callable[[], Any]) -> tuple[Any, float]:
    """``work()``'s result, and the slowest ``/api/health`` answer while it ran (asked every
    50 ms from another thread)."""
    slowest = 0.0
    done = threading.Event()

    def probe() -> None:
        nonlocal slowest
        with server.client(timeout=30) as http:
            while not done.is_set():
                began = time.perf_counter()
                http.get("/api/health").raise_for_status()
                slowest = max(slowest, time.perf_counter() - began)
                time.sleep(0.05)

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        return work(), slowest
    finally:
        done.set()
        prober.join()


def test_the_server_keeps_answering_while_a_250000_run_experiment_is_created_and_prepared(
    serve: Callable[..., Deployed],
):
    server = serve()
    document = {
        "name": "largest",
        "parameter_space": {
            "model": ["mock:small"],
            "prompt": [f"Prompt {i}: {{{{ input }}}}" for i in range(250)],
        },
        "dataset": {"rows": [{"input": f"ticket {i}", "expected": "billing"} for i in range(1000)]},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": {"mock": {}},
        "concurrency": 4,
    }
    with server.client(timeout=600) as http:
        project = http.post("/api/projects", json={"name": "largest"}, headers=server.admin)

        def create_and_prepare() -> tuple[httpx.Response, dict[str, Any]]:
            created = http.post(
                f"/api/projects/{project.json()['id']}/experiments",
                json=document,
                headers=server.admin,
            )
            experiment_id = created.json()["id"]
            http.post(f"/api/experiments/{experiment_id}/start", headers=server.admin)

            def first_runs() -> dict[str, Any] | None:
                body = http.get(f"/api/experiments/{experiment_id}", headers=server.admin).json()
                return body if body["progress"]["completed"] else None

            return created, wait_for(first_runs, 300, what="the first runs")

        (created, running), slowest = slowest_health_while(server, create_and_prepare)
        http.post(f"/api/experiments/{running['id']}/cancel", headers=server.admin)

    assert created.status_code == 201, created.text
    assert created.json()["total_runs"] == 250_000
    assert slowest < 1.0, f"/api/health took {slowest:.2f} s"
