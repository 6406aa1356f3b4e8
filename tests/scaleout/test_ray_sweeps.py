"""Sweeps executed on a real two-node Ray cluster, the database still written by the driver."""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from promptlooper.sweeps.execution import ExecutionOptions, run_experiment
from promptlooper.sweeps.models import Run, Score, StageResult
from promptlooper.sweeps.providers import ProviderPolicy
from tests.cli.inprocess import Invoke
from tests.scaleout.local_cluster import LocalCluster
from tests.sweeps.conftest import ROWS_60, create, document


def sweep(*, rows: int = 60, latency_ms: float = 0, cache: bool = False, **provider: Any) -> dict:
    """Four configs of the mock classifier over ``rows`` rows, scored two ways."""
    doc = document(
        dataset={"rows": ROWS_60[:rows]},
        cache=cache,
        concurrency=8,
    )
    doc["providers"]["mock"].update(latency_ms=latency_ms, **provider)
    doc["parameter_space"]["temperature"] = [0.0]
    return doc


async def _results(sessionmaker, experiment_id: uuid.UUID) -> dict[tuple, tuple]:
    """Every run's outcome by its place in the sweep (config, row, repeat)."""
    async with sessionmaker() as session:
        runs = (
            await session.execute(
                select(
                    Run.id, Run.config_hash, Run.row_index, Run.repeat, Run.status, Run.cached
                ).where(Run.experiment_id == experiment_id)
            )
        ).all()
        stages = dict(
            (
                await session.execute(
                    select(StageResult.run_id, StageResult.response_raw)
                    .join(Run)
                    .where(Run.experiment_id == experiment_id)
                )
            ).all()
        )
        scores: dict[uuid.UUID, dict[str, float]] = {}
        for run_id, name, value in await session.execute(
            select(Score.run_id, Score.scorer_name, Score.value)
            .join(Run)
            .where(Run.experiment_id == experiment_id)
        ):
            scores.setdefault(run_id, {})[name] = value
    return {
        (digest, row, repeat): (status, stages.get(run_id), scores.get(run_id))
        for run_id, digest, row, repeat, status, _cached in runs
    }


async def _counts(sessionmaker, experiment_id: uuid.UUID) -> tuple[int, int, int]:
    """Runs completed, stage results and scores of the experiment."""
    async with sessionmaker() as session:
        mine = Run.experiment_id == experiment_id
        completed = await session.scalar(
            select(func.count()).where(mine, Run.status == "completed")
        )
        stages = await session.scalar(
            select(func.count()).select_from(StageResult).join(Run).where(mine)
        )
        scores = await session.scalar(select(func.count()).select_from(Score).join(Run).where(mine))
    return completed or 0, stages or 0, scores or 0


def _options(settings, cluster: LocalCluster | None) -> ExecutionOptions:
    return ExecutionOptions(
        policy=ProviderPolicy.server(settings),
        ray_address=cluster.address if cluster else None,
    )


def _nodes_used(before: dict[str, int]) -> set[str]:
    from promptlooper.sweeps.engine.distributed import stats

    return {node for node, count in stats.batches_by_node.items() if count > before.get(node, 0)}


async def test_a_sweep_on_the_cluster_equals_the_sweep_in_process_and_fills_the_cache(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, settings, ray_cluster
):
    from promptlooper.sweeps.engine.distributed import stats

    doc = sweep(cache=True)
    on_cluster = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    in_process = uuid.UUID((await create(client, owner, project_id, sweep()))["id"])
    again = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    before = dict(stats.batches_by_node)

    spread = await run_experiment(
        app.state.engine, on_cluster, options=_options(settings, ray_cluster)
    )
    here = await run_experiment(app.state.engine, in_process, options=_options(settings, None))
    replayed = await run_experiment(
        app.state.engine, again, options=_options(settings, ray_cluster)
    )

    assert spread.progress.done == here.progress.done == 240
    assert len(_nodes_used(before)) == 2  # both nodes made calls
    expected = await _results(sessionmaker, in_process)
    assert await _results(sessionmaker, on_cluster) == expected
    assert spread.cache_misses == 240
    assert spread.cache_hits == 0
    # The cluster's answers went into the cache: the same sweep again is answered from it.
    assert replayed.progress.cached == 240
    assert replayed.cache_hits == 240
    assert await _results(sessionmaker, again) == expected


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the cluster's part, not the DB's
async def test_a_worker_node_killed_mid_sweep_loses_and_duplicates_nothing(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, settings, ray_cluster
):
    import ray

    from promptlooper.sweeps.engine.distributed import cluster_status, stats

    # Batches of 16 runs, 4 calls at a time of 200 ms each: a batch runs for 0.8 s at least.
    doc = sweep(rows=30, latency_ms=200)
    experiment_id = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    driver_node = ray.get_runtime_context().get_node_id()
    victim_id, victim_port = next(
        (node["NodeID"], node["NodeManagerPort"])
        for node in ray.nodes()
        if node["Alive"] and node["NodeID"] != driver_node
    )
    retried = stats.retried
    finished: list[int] = [0]
    stop = threading.Event()

    def kill_while_it_runs_a_batch() -> bool:
        """Kill the node once the sweep is under way and a batch is running there."""
        while not stop.wait(0.02):
            if finished[0] < 16:
                continue
            for sweep_on_cluster in cluster_status(ray_cluster.address)["sweeps"]:
                batches = sweep_on_cluster["in_flight"]
                if any(b["node_id"] == victim_id and _just_begun(b) for b in batches):
                    ray_cluster.kill_node(ray_cluster.index_of(victim_port))
                    return True
        return False

    def count(progress, _outcome) -> None:
        finished[0] = progress.finished

    with ThreadPoolExecutor(1) as pool:
        killed = pool.submit(kill_while_it_runs_a_batch)
        try:
            result = await run_experiment(
                app.state.engine,
                experiment_id,
                options=_options(settings, ray_cluster),
                on_progress=count,
            )
        finally:
            stop.set()
            if killed.result():
                ray_cluster.start_node(1)  # the next test finds two nodes again

    assert killed.result(), "the node was not killed mid-sweep"
    assert result.progress.done == 120
    assert result.progress.failed == 0
    assert await _counts(sessionmaker, experiment_id) == (120, 120, 240)
    assert stats.retried > retried  # the dead node's batches were run again elsewhere


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the cluster's part, not the DB's
@pytest.mark.parametrize(
    ("limit", "least_seconds"),
    [
        # 600 a minute is 10 a second with bursts of 10: 80 calls take 7 s at least in all,
        # under 4 s if each node (or each batch) had the limit to itself.
        ({"rate_limit": 600}, 6.0),
        # 2 calls at a time of 100 ms: 80 calls take 4 s at least in all, under 3 s if each
        # batch (16 calls) could make 2 at a time of its own.
        ({"concurrency": 2, "latency_ms": 100}, 3.5),
    ],
    ids=["rate_limit", "concurrency"],
)
async def test_a_provider_limit_holds_across_the_whole_cluster(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner,
    project_id,
    sessionmaker,
    settings,
    ray_cluster,
    limit: dict[str, float],
    least_seconds: float,
):
    from promptlooper.sweeps.engine.distributed import stats

    doc = sweep(rows=20, **limit)
    experiment_id = uuid.UUID((await create(client, owner, project_id, doc))["id"])
    before = dict(stats.batches_by_node)

    result = await run_experiment(
        app.state.engine, experiment_id, options=_options(settings, ray_cluster)
    )

    assert result.progress.done == 80
    assert len(_nodes_used(before)) == 2
    async with sessionmaker() as session:
        first, last = (
            await session.execute(
                select(func.min(Run.completed_at), func.max(Run.completed_at)).where(
                    Run.experiment_id == experiment_id
                )
            )
        ).one()
    assert (last - first).total_seconds() >= least_seconds


def _just_begun(batch: dict[str, Any]) -> bool:
    """Begun so recently that it cannot have finished: killing its node loses it."""
    return time.time() - batch["since"] < 0.3


def test_ray_status_shows_the_nodes_of_the_cluster(cli: Invoke, ray_cluster: LocalCluster):
    result = cli("ray", "status", "--ray", ray_cluster.address)

    assert result.code == 0, result.err
    assert result.out.count(" yes ") == 2  # two live nodes
    assert "CPU 2/2 free" in result.out
    assert "no sweep is executing on the cluster" in result.out


def test_once_joined_ray_s_own_warnings_are_shown_again(ray_cluster: LocalCluster):
    """Ray's logger is quiet only while joining (see ``raycluster``): a lost node, a batch
    retried, are Ray's warnings worth seeing during a sweep."""
    assert logging.getLogger("ray").getEffectiveLevel() == logging.WARNING


def test_sweep_run_with_ray_makes_its_calls_on_the_cluster(
    cli: Invoke, ray_cluster: LocalCluster, tmp_path: Path
):
    from promptlooper.sweeps.engine.distributed import stats

    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(sweep(rows=30)))
    before = sum(stats.batches_by_node.values())

    result = cli("sweep", "run", str(path), "--ray", ray_cluster.address)

    assert result.code == 0, result.err
    assert "120 runs" in result.err
    assert "120 completed" in result.err
    assert f"on the Ray cluster at {ray_cluster.address}: " in result.err
    assert sum(stats.batches_by_node.values()) > before


def test_a_sweep_whose_driver_dies_is_resumed_and_finishes_with_every_run_once(
    cli: Invoke, ray_cluster: LocalCluster, tmp_path: Path
):
    path = tmp_path / "sweep.json"
    path.write_text(json.dumps(sweep(latency_ms=40)))
    database = Path(os.environ["DATABASE_URL"].removeprefix("sqlite:///"))
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "promptlooper",
            "sweep",
            "run",
            str(path),
            "--ray",
            ray_cluster.address,
        ],
        env={**os.environ, "SWEEP_LEASE_SECONDS": "2"},  # the token is in this environment
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 90
        while _completed(database) < 40 and time.monotonic() < deadline:
            time.sleep(0.05)
        status = cli("ray", "status", "--ray", ray_cluster.address)
    finally:
        driver.kill()
        driver.wait()
    with sqlite3.connect(database) as db:
        (experiment_id,) = db.execute("SELECT id FROM experiments").fetchone()
    experiment = str(uuid.UUID(experiment_id))
    done_before = _completed(database)
    time.sleep(2.5)  # the dead driver's lease lapses

    resumed = cli("sweep", "resume", experiment, "--ray", ray_cluster.address)

    assert f"sweep {experiment}: " in status.out  # the running sweep's batches were listed
    assert " in flight (" in status.out
    assert "SweepCoordinator" in status.out  # and the actor it placed
    assert 40 <= done_before < 240, "the driver did not die mid-sweep"
    assert resumed.code == 0, resumed.err
    assert f"resuming: {done_before} of 240 runs already completed" in resumed.err
    with sqlite3.connect(database) as db:
        runs = db.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall()
        stages = db.execute("SELECT count(*), count(DISTINCT run_id) FROM stage_results").fetchone()
    assert runs == [("completed", 240)]
    assert stages == (240, 240)


def _completed(database: Path) -> int:
    try:
        with sqlite3.connect(database) as db:
            return db.execute("SELECT count(*) FROM runs WHERE status = 'completed'").fetchone()[0]
    except sqlite3.OperationalError:  # not created yet, or locked for a moment
        return 0


def test_without_a_ray_address_nothing_of_ray_is_imported():
    code = (
        "import sys, promptlooper.cli.main, promptlooper.api, promptlooper.sweeps.execution\n"
        "from promptlooper.cli.main import app\n"
        "assert 'ray' not in sys.modules, 'ray was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_ray_status_without_an_address_says_how_to_give_one(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    result = cli("ray", "status")

    assert result.code == 2
    assert result.err.strip() == "error: no Ray cluster: set RAY_ADDRESS or pass --ray ADDRESS"


def test_a_sweep_of_local_models_stays_in_the_driver_process(caplog: pytest.LogCaptureFixture):
    from promptlooper.sweeps.adapters.base import ProviderConfig
    from promptlooper.sweeps.execution import on_cluster

    options = ExecutionOptions(policy=None, ray_address="127.0.0.1:6390")  # type: ignore[arg-type]
    providers = {"mock": ProviderConfig("mock", "mock"), "tuned": ProviderConfig("tuned", "local")}

    def plan(*models: str) -> Any:
        """A plan with every provider configured, calling only ``models``."""
        return SimpleNamespace(providers=providers, model_refs=lambda: dict.fromkeys(models, ""))

    hosted, local = plan("mock:small"), plan("mock:small", "tuned:smollm2")

    assert on_cluster(options, hosted)
    assert not on_cluster(options, local)
    assert "['tuned'] run local models: this sweep runs in this process" in caplog.text
    assert not on_cluster(replace(options, ray_address=None), hosted)
