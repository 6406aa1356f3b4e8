"""A server given a Ray cluster runs the sweeps it starts there."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.settings import Settings
from tests.scaleout.local_cluster import LocalCluster
from tests.scaleout.test_ray_sweeps import sweep
from tests.sweeps.conftest import create, run_to_end


@pytest.fixture
def settings(settings: Settings, ray_cluster: LocalCluster) -> Settings:
    return settings.model_copy(update={"ray_address": ray_cluster.address})


async def test_a_sweep_started_through_the_api_runs_on_the_cluster(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    from promptlooper.sweeps.engine.distributed import stats

    before = sum(stats.batches_by_node.values())
    experiment = await create(client, owner, project_id, sweep(rows=30))

    finished = await run_to_end(client, app, owner, experiment["id"])

    assert finished["status"] == "completed"
    assert finished["progress"]["completed"] == 120
    assert sum(stats.batches_by_node.values()) > before  # its batches ran on the cluster
