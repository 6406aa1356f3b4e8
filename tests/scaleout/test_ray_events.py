"""A sweep on the cluster publishes the run events a sweep in process publishes, as they happen."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.events import EventBus
from promptlooper.sweeps.execution import ExecutionOptions, run_experiment
from promptlooper.sweeps.providers import ProviderPolicy
from tests.scaleout.local_cluster import LocalCluster
from tests.scaleout.test_ray_sweeps import sweep
from tests.sweeps.conftest import create

RUN = ["run.started", "run.stage_completed", "run.completed"]


def _per_run(events: list[dict[str, Any]]) -> dict[str, list[str]]:
    runs: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if event["type"].startswith("run."):
            runs[event["run_id"]].append(event["type"])
    return runs


def _fields(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    return {event["type"]: set(event) for event in events}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the cluster's part, not the DB's
async def test_a_sweep_on_the_cluster_publishes_the_run_events_of_a_sweep_in_process(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, settings, ray_cluster: LocalCluster
):
    # 40 runs of 300 ms, 8 at a time over the cluster's 2 CPUs: 2 batches of 16 in flight.
    doc = sweep(rows=10, latency_ms=300)
    on_cluster = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    in_process = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    bus = EventBus()
    published: list[dict[str, Any]] = []
    bus.subscribe(published.append)
    policy = ProviderPolicy.server(settings)

    await run_experiment(
        app.state.engine,
        on_cluster,
        options=ExecutionOptions(policy=policy, ray_address=ray_cluster.address),
        bus=bus,
    )
    from_cluster, published[:] = list(published), []
    await run_experiment(
        app.state.engine, in_process, options=ExecutionOptions(policy=policy), bus=bus
    )

    cluster_runs, process_runs = _per_run(from_cluster), _per_run(published)
    assert len(cluster_runs) == len(process_runs) == 40
    # Every run starts, completes its stage and ends once, in that order, on the cluster too.
    assert all(types == RUN for types in cluster_runs.values())
    assert all(types == RUN for types in process_runs.values())
    assert _fields(from_cluster) == _fields(published)
    assert [e["type"] for e in from_cluster if not e["type"].startswith("run.")] == [
        "experiment.started",
        "experiment.completed",
    ]
    assert {e["experiment_id"] for e in from_cluster} == {str(on_cluster)}
    # Live: when the first run ends, the runs of the batch still running have been seen
    # starting already, not only those of the batch that came back.
    first_end = next(i for i, e in enumerate(from_cluster) if e["type"] == "run.completed")
    assert sum(e["type"] == "run.started" for e in from_cluster[:first_end]) > 16
