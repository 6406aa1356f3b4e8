"""A server given a Ray cluster runs the sweeps it starts there, and reports the cluster in
``/api/health``: to admins in full, to anyone else without a word of its addresses."""

from __future__ import annotations

import time

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.settings import Settings
from tests.deployed import Deployed
from tests.factories import make_actor
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


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_health_shows_the_cluster_to_admins_only(
    client: httpx.AsyncClient, owner, sessionmaker, ray_cluster: LocalCluster
):
    admin = await make_actor(sessionmaker, "root", is_admin=True)

    anonymous = await client.get("/api/health")
    user = await client.get("/api/health", headers=owner.headers)
    full = await client.get("/api/health", headers=admin.headers)
    wrong = await client.get("/api/health", headers={"X-Api-Key": "not-a-key"})

    for answer in (anonymous, user):
        assert answer.status_code == 200
        assert answer.json()["ray"] == {"configured": True, "connected": True}
        assert ray_cluster.address not in answer.text
    assert full.status_code == 200
    ray = full.json()["ray"]
    assert ray["address"] == ray_cluster.address
    assert ray["connected"] is True
    assert ray["error"] is None
    assert ray["nodes_alive"] == 2
    assert ray["resources"]["CPU"] == 2
    assert ray["sweeps"] == []
    assert wrong.status_code == 401  # credentials that do not hold are refused, not ignored


@pytest.mark.parametrize("deployed_db", ["sqlite"], indirect=True)
def test_a_server_started_with_ray_shows_its_sweeps_batches_in_health(
    serve, ray_cluster: LocalCluster
):
    server: Deployed = serve(("--ray", ray_cluster.address))  # the token is in the environment
    with server.client() as http:
        project = http.post("/api/projects", json={"name": "ray"}, headers=server.admin).json()
        doc = sweep(rows=60, latency_ms=200)
        created = http.post(
            f"/api/projects/{project['id']}/experiments", json=doc, headers=server.admin
        )
        assert created.status_code == 201, created.text
        experiment = created.json()["id"]
        started = http.post(f"/api/experiments/{experiment}/start", headers=server.admin)
        assert started.status_code == 202, started.text

        seen = None
        deadline = time.monotonic() + 90
        while seen is None and time.monotonic() < deadline:
            ray = http.get("/api/health", headers=server.admin).json()["ray"]
            mine = [s for s in ray.get("sweeps", []) if s["experiment_id"] == experiment]
            if mine and mine[0]["batches_in_flight"] > 0:
                seen = ray
            time.sleep(0.1)
        anonymous = http.get("/api/health")

    assert seen is not None, "the sweep's batches never showed in /api/health"
    assert seen["address"] == ray_cluster.address
    assert seen["nodes_alive"] == 2
    (running,) = [s for s in seen["sweeps"] if s["experiment_id"] == experiment]
    assert running["runs_in_flight"] == sum(b["runs"] for b in running["in_flight"]) > 0
    nodes = {node["node_id"] for node in seen["nodes"]}
    assert {batch["node_id"] for batch in running["in_flight"]} <= nodes
    coordinators = [a for a in seen["actors"] if a["class"] == "SweepCoordinator"]
    assert any(experiment in actor["name"] for actor in coordinators)
    assert all(a["node_id"] in nodes for a in coordinators)
    assert anonymous.status_code == 200
    assert anonymous.json()["ray"]["configured"] is True
    for node in seen["nodes"]:  # no address of the cluster for an anonymous caller
        assert node["address"].partition(":")[0] not in anonymous.text
    assert ray_cluster.address not in anonymous.text


def _train_over_http(server: Deployed) -> dict:
    """A run on the tiny model through the REST routes: two steps, a seeded sample and a
    checkpoint, each call answered before the next is sent."""
    with server.client(timeout=300) as http:
        created = http.post(
            "/api/training/runs",
            json={"base_model": "tiny-test", "name": "over http", "seed": 3, "lora_rank": 4},
            headers=server.admin,
        )
        assert created.status_code == 201, created.text
        runs = f"/api/training/runs/{created.json()['id']}"
        losses, steps = [], []
        for text in ("one two three four five", "the quick brown fox"):
            answer = http.post(
                f"{runs}/forward_backward",
                json={"examples": [{"text": text}]},
                headers=server.admin,
            )
            assert answer.status_code == 200, answer.text
            losses.append(answer.json()["loss"])
            stepped = http.post(
                f"{runs}/optim_step", json={"learning_rate": 0.02}, headers=server.admin
            )
            assert stepped.status_code == 200, stepped.text
            steps.append(stepped.json()["step"])
        sampled = http.post(
            f"{runs}/sample",
            json={"prompts": ["Once upon a time"], "max_tokens": 8, "seed": 7},
            headers=server.admin,
        )
        assert sampled.status_code == 200, sampled.text
        saved = http.post(f"{runs}/save_state", json={"name": "two"}, headers=server.admin)
        assert saved.status_code == 201, saved.text
        listed = http.get(f"{runs}/checkpoints", headers=server.admin).json()
        health = http.get("/api/health", headers=server.admin).json()
    return {
        "losses": losses,
        "steps": steps,
        "sample": sampled.json()["samples"][0]["sequences"][0]["tokens"],
        "saved": (saved.json()["name"], saved.json()["step"]),
        "checkpoints": [(c["name"], c["step"]) for c in listed["data"]],
        "health": health,
    }


@pytest.mark.parametrize("deployed_db", ["sqlite"], indirect=True)
def test_a_server_started_with_ray_trains_over_http_in_a_host_actor(
    serve, ray_cluster: LocalCluster
):
    on_cluster = _train_over_http(serve(("--ray", ray_cluster.address)))
    in_process = _train_over_http(serve())

    for key in ("losses", "steps", "sample", "saved", "checkpoints"):
        assert on_cluster[key] == in_process[key], key  # the primitives' numbers do not change
    assert on_cluster["steps"] == [1, 2]
    assert on_cluster["losses"][0] != on_cluster["losses"][1]
    assert on_cluster["saved"] == ("two", 2)
    ray = on_cluster["health"]["ray"]
    nodes = {node["node_id"] for node in ray["nodes"]}
    (host,) = [actor for actor in ray["actors"] if actor["class"] == "HostActor"]
    assert host["name"].startswith("model-tiny-test-")
    assert host["node_id"] in nodes
    assert in_process["health"]["ray"] == {"configured": False}
