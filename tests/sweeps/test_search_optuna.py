"""Optuna searches: numeric ranges sampled, poor trials pruned, the budget, resuming."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from promptlooper.sweeps.execution import ExecutionOptions, run_experiment
from promptlooper.sweeps.models import Run
from promptlooper.sweeps.providers import ProviderPolicy
from tests.sweeps.conftest import create, run_to_end
from tests.sweeps.test_search_racing import LABELS, rows


def tuning(n_trials: int | None = 8, **search: Any) -> dict[str, Any]:
    return {
        "name": "tune",
        "parameter_space": {
            "model": ["mock:good", "mock:bad"],
            "prompt": "Classify in one word: {{ input }}",
            "temperature": {"low": 0.0, "high": 1.5},
            "max_tokens": {"low": 64, "high": 512, "log": True},
        },
        "dataset": {"rows": rows(40)},
        "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
        "providers": {
            "mock": {
                "models": {"good": {"accuracy": 0.95}, "bad": {"accuracy": 0.3}},
                "knowledge": LABELS,
            }
        },
        "search": {"strategy": "optuna", "n_trials": n_trials, "first_slice": 10, **search},
        "concurrency": 4,
    }


async def _runs(sessionmaker, experiment_id: str) -> dict[str, dict[str, Any]]:
    """Per config: its parameters and its runs by status."""
    query = select(Run.config_hash, Run.parameters, Run.status).where(
        Run.experiment_id == uuid.UUID(experiment_id)
    )
    configs: dict[str, dict[str, Any]] = {}
    async with sessionmaker() as session:
        for digest, parameters, status in await session.execute(query):
            entry = configs.setdefault(digest, {"parameters": parameters, "statuses": {}})
            entry["statuses"][status] = entry["statuses"].get(status, 0) + 1
    return configs


async def test_optuna_samples_ranges_and_prunes_poor_trials(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, tuning())
    final = await run_to_end(client, app, owner, experiment["id"])
    board = (
        await client.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers)
    ).json()
    configs = await _runs(sessionmaker, experiment["id"])

    assert final["status"] == "completed", final["error"]
    assert 1 < len(configs) <= 8
    for config in configs.values():
        parameters = config["parameters"]
        assert isinstance(parameters["max_tokens"], int)
        assert 64 <= parameters["max_tokens"] <= 512
        assert 0.0 <= parameters["temperature"] <= 1.5
        assert set(config["statuses"]) <= {"completed", "skipped"}
    assert any("skipped" in c["statuses"] for c in configs.values()), "nothing was pruned"
    assert board["data"][0]["parameters"]["model"] == "mock:good"


async def test_optuna_stops_at_its_budget(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, tuning(None, budget={"calls": 95}))
    final = await run_to_end(client, app, owner, experiment["id"])
    configs = await _runs(sessionmaker, experiment["id"])
    completed = sum(c["statuses"].get("completed", 0) for c in configs.values())

    assert final["status"] == "completed"
    assert completed == 95
    assert all("pending" not in c["statuses"] for c in configs.values())


class Crash(Exception):
    pass


async def test_a_resumed_optuna_search_refeeds_its_trials(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, settings
):
    experiment = await create(client, owner, project_id, tuning())
    experiment_id = uuid.UUID(experiment["id"])
    options = ExecutionOptions(policy=ProviderPolicy.server(settings), lease_seconds=5)

    def crash(progress, _outcome) -> None:
        if progress.finished == 90:
            raise Crash

    with pytest.raises(BaseExceptionGroup):
        await run_experiment(app.state.engine, experiment_id, options=options, on_progress=crash)
    before = await _runs(sessionmaker, experiment["id"])
    await run_experiment(app.state.engine, experiment_id, options=options)
    after = await _runs(sessionmaker, experiment["id"])

    assert 1 < len(before) < len(after) <= 8
    for digest, config in before.items():  # decisions kept, cut-short trials finished
        then, now = config["statuses"], after[digest]["statuses"]
        assert now.get("completed", 0) >= then.get("completed", 0)
        if then.get("skipped"):
            assert now == then
    assert all("pending" not in c["statuses"] for c in after.values())
