"""Adaptive searches (racing, Optuna) on a real two-node Ray cluster: the driver keeps the
database and the search's decisions, each step's runs go out in batches like a grid's, and a
budget holds over every node, its ledger written by the driver."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.db.engine import create_sessionmaker
from promptlooper.settings import Settings
from promptlooper.sweeps.execution import run_experiment
from promptlooper.sweeps.models import Experiment
from promptlooper.sweeps.search import store
from tests.cli.inprocess import Invoke
from tests.scaleout.local_cluster import LocalCluster
from tests.scaleout.test_ray_sweeps import _nodes_used, _options, _results
from tests.sweeps.conftest import create, run_to_end
from tests.sweeps.test_search_racing import racing

ON_SQLITE = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
"""The cluster's part is under test, not the database's."""


def _optuna(n_trials: int = 4) -> dict:
    doc = racing({"good": 0.9, "close": 0.85, "bad": 0.3}, n_rows=12)
    doc["search"] = {"strategy": "optuna", "n_trials": n_trials, "first_slice": 4, "seed": 3}
    return doc


@pytest.fixture
def settings(settings: Settings, ray_cluster: LocalCluster) -> Settings:
    return settings.model_copy(update={"ray_address": ray_cluster.address})


async def _eliminated(app: FastAPI, experiment_id: uuid.UUID) -> list[tuple[str, int]]:
    async with create_sessionmaker(app.state.engine)() as session:
        decisions = await store.eliminations(session, experiment_id)
    return sorted((d.config_hash, d.slice_index) for d in decisions)


@ON_SQLITE
@pytest.mark.parametrize(
    "doc",
    [racing({"good": 0.95, "close": 0.93, "bad": 0.1}, n_rows=60), _optuna()],
    ids=["racing", "optuna"],
)
async def test_a_search_on_the_cluster_decides_and_scores_as_in_process(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner,
    project_id,
    sessionmaker,
    settings,
    ray_cluster,
    doc: dict,
):
    from promptlooper.sweeps.engine.distributed import stats

    spread = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    here = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    before = dict(stats.batches_by_node)

    on_cluster = await run_experiment(
        app.state.engine, spread, options=_options(settings, ray_cluster)
    )
    in_process = await run_experiment(app.state.engine, here, options=_options(settings, None))

    assert len(_nodes_used(before)) == 2  # both nodes made the search's calls
    expected = await _results(sessionmaker, here)
    assert await _results(sessionmaker, spread) == expected  # the same runs, skips and scores
    assert "pending" not in {status for status, _, _ in expected.values()}
    assert await _eliminated(app, spread) == await _eliminated(app, here)
    assert on_cluster.progress.done == in_process.progress.done
    if doc["search"]["strategy"] == "racing":
        assert len(await _eliminated(app, here)) == 1  # "bad" loses after the first slice
        assert any(status == "skipped" for status, _, _ in expected.values())
    else:
        assert len({digest for digest, _, _ in expected}) > 1  # trials of several configs


@ON_SQLITE
async def test_a_server_on_the_cluster_runs_a_racing_search(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    from promptlooper.sweeps.engine.distributed import stats

    doc = racing({"good": 0.95, "bad": 0.1}, n_rows=40)
    experiment = await create(client, owner, project_id, doc)
    batches = sum(stats.batches_by_node.values())

    final = await run_to_end(client, app, owner, experiment["id"])

    assert final["status"] == "completed"
    assert sum(stats.batches_by_node.values()) > batches  # its steps ran on the cluster
    assert len(await _eliminated(app, uuid.UUID(experiment["id"]))) == 1


@ON_SQLITE
async def test_a_budget_holds_over_the_whole_cluster_and_its_ledger_is_the_drivers(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, settings, ray_cluster
):
    # The first slice alone (3 configs x 20 rows) needs 60 calls: the budget stops it at 50,
    # every batch on either node reserving its calls at the coordinator.
    doc = racing({"good": 0.95, "close": 0.93, "fair": 0.9}, n_rows=60, budget={"calls": 50})
    experiment_id = uuid.UUID((await create(client, owner, project_id, doc))["id"])

    result = await run_experiment(
        app.state.engine, experiment_id, options=_options(settings, ray_cluster)
    )

    results = await _results(sessionmaker, experiment_id)
    made = [answer for status, answer, _ in results.values() if status == "completed"]
    assert len(made) == 50  # every call the budget allowed, and not one more
    assert result.progress.spent_out
    assert "pending" not in {status for status, _, _ in results.values()}
    async with sessionmaker() as session:
        experiment = await session.get(Experiment, experiment_id)
    assert experiment.status == "completed"
    assert experiment.search_calls == 50  # what was really spent, written by the driver


def test_sweep_run_with_ray_runs_a_search_with_a_budget_there(
    cli: Invoke, tmp_path: Path, ray_cluster: LocalCluster
):
    doc = racing({"good": 0.95, "bad": 0.1}, n_rows=40, budget={"calls": 30})
    path = tmp_path / "search.json"
    path.write_text(json.dumps(doc))

    ran = cli("sweep", "run", str(path), "--ray", ray_cluster.address)

    assert ran.code == 0, ran.err
    assert "status completed" in ran.out
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("SELECT search_calls FROM experiments").fetchone() == (30,)
        assert db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone() == (
            30,
        )
