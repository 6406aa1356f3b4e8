"""Racing searches: eliminations that must and must not happen, the budget, resuming."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from promptlooper.sweeps.execution import ExecutionOptions, run_experiment
from promptlooper.sweeps.models import Run, StageResult
from promptlooper.sweeps.providers import ProviderPolicy
from promptlooper.sweeps.search import store
from promptlooper.sweeps.search.racing import ALL_FAILED, eliminate
from tests.sweeps import (
    scripted,  # noqa: F401  (registers the ``scripted`` provider type)
    tally,
)
from tests.sweeps.conftest import create, run_to_end

LABELS = {"charged": "billing", "crash": "bug", "password": "account"}


def rows(n: int) -> list[dict[str, Any]]:
    keywords = list(LABELS)
    return [
        {
            "input": f"Ticket {i}: something about {keywords[i % 3]}",
            "expected": LABELS[keywords[i % 3]],
        }
        for i in range(n)
    ]


def racing(models: dict[str, float], n_rows: int = 80, **search: Any) -> dict[str, Any]:
    return {
        "name": "race",
        "parameter_space": {
            "model": [f"mock:{name}" for name in models],
            "prompt": "Classify in one word: {{ input }}",
        },
        "dataset": {"rows": rows(n_rows)},
        "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
        "providers": {
            "mock": {
                "models": {name: {"accuracy": accuracy} for name, accuracy in models.items()},
                "knowledge": LABELS,
            }
        },
        "search": {"strategy": "racing", "first_slice": 20, **search},
        "concurrency": 4,
    }


async def _counts(sessionmaker, experiment_id: str) -> dict[str, dict[str, int]]:
    """Runs by model and status."""
    query = select(Run.parameters, Run.status).where(Run.experiment_id == uuid.UUID(experiment_id))
    counts: dict[str, dict[str, int]] = {}
    async with sessionmaker() as session:
        for parameters, status in await session.execute(query):
            per_status = counts.setdefault(parameters["model"], {})
            per_status[status] = per_status.get(status, 0) + 1
    return counts


async def test_a_config_far_behind_is_eliminated_after_the_first_slice(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(
        client, owner, project_id, racing({"good": 0.95, "close": 0.93, "bad": 0.1})
    )
    final = await run_to_end(client, app, owner, experiment["id"])
    board = (
        await client.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers)
    ).json()
    counts = await _counts(sessionmaker, experiment["id"])

    assert final["status"] == "completed", final
    assert counts["mock:bad"] == {"completed": 20, "skipped": 60}
    assert counts["mock:good"] == {"completed": 80}
    (elimination,) = board["eliminated"]
    assert elimination["parameters"] == {
        "model": "mock:bad",
        "prompt": "Classify in one word: {{ input }}",
    }
    assert elimination["rows"] == 20
    assert elimination["effect"] < -0.5
    assert elimination["p_value"] < 0.05
    assert elimination["lost_to"] in {e["config_hash"] for e in board["data"]}


async def test_configs_that_are_as_good_as_each_other_are_not_eliminated(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, racing({"one": 0.8, "other": 0.8}))
    final = await run_to_end(client, app, owner, experiment["id"])
    board = (
        await client.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers)
    ).json()

    assert final["status"] == "completed"
    assert board["eliminated"] == []
    assert await _counts(sessionmaker, experiment["id"]) == {
        "mock:one": {"completed": 80},
        "mock:other": {"completed": 80},
    }


def with_a_broken_config(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with one more model, ``broken:down``, whose every call fails."""
    doc["parameter_space"]["model"].append("broken:down")
    doc["providers"]["broken"] = {"type": "scripted", "fail": "provider down", "max_retries": 0}
    return doc


async def test_a_config_whose_every_run_fails_is_eliminated_with_its_reason(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    doc = with_a_broken_config(racing({"good": 0.95, "close": 0.93}))
    experiment = await create(client, owner, project_id, doc)
    final = await run_to_end(client, app, owner, experiment["id"])
    board = (
        await client.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers)
    ).json()
    report = (
        await client.get(
            f"/api/export/experiments/{experiment['id']}/report", headers=owner.headers
        )
    ).text
    counts = await _counts(sessionmaker, experiment["id"])

    assert final["status"] == "completed", final
    assert counts["broken:down"] == {"failed": 20, "skipped": 60}
    assert counts["mock:good"] == {"completed": 80}
    (elimination,) = board["eliminated"]
    assert elimination["parameters"]["model"] == "broken:down"
    assert elimination["reason"] == "all runs failed"
    assert elimination["rows"] == 20
    assert elimination["effect"] is None
    assert elimination["p_value"] is None
    assert elimination["lost_to"] in {e["config_hash"] for e in board["data"]}
    assert f"| `{elimination['config_hash']}` |" in report
    assert "| all runs failed |" in report


@pytest.mark.parametrize("budget", [{"calls": 50}, {"usd": 0.002}, {"tokens": 900}])
async def test_the_budget_is_never_crossed_and_cached_answers_cost_nothing(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, budget
):
    doc = racing({"good": 0.95, "close": 0.93, "fair": 0.9}, budget=budget)
    doc["providers"]["mock"]["prices"] = {
        name: {"input": 2.0, "output": 4.0} for name in ("good", "close", "fair")
    }
    first = await create(client, owner, project_id, doc)
    await run_to_end(client, app, owner, first["id"])
    second = await create(client, owner, project_id, {**doc, "name": "again"})
    await run_to_end(client, app, owner, second["id"])

    spent = {}
    for experiment in (first, second):
        query = (
            select(
                func.count(),
                func.sum(StageResult.cost),
                func.sum(StageResult.tokens_in + StageResult.tokens_out),
            )
            .join(Run, Run.id == StageResult.run_id)
            .where(Run.experiment_id == uuid.UUID(experiment["id"]), StageResult.cached.is_(False))
        )
        async with sessionmaker() as session:
            spent[experiment["id"]] = (await session.execute(query)).one()
    counts = await _counts(sessionmaker, first["id"])
    completed = sum(c.get("completed", 0) for c in counts.values())
    calls, usd, tokens = spent[first["id"]]

    assert 0 < calls <= budget.get("calls", calls)
    assert (usd or 0) <= budget.get("usd", 1)
    assert (tokens or 0) <= budget.get("tokens", 10**9)
    assert completed == calls < 240  # stopped before a call that would cross it
    # The same search again answers from the cache: no call, so nothing spent, and it goes
    # further with the same budget.
    again = await _counts(sessionmaker, second["id"])
    assert spent[second["id"]][0] <= budget.get("calls", 10**9)
    assert sum(c.get("completed", 0) for c in again.values()) > completed


class Crash(Exception):
    """The process dying mid-race, as far as the finished runs are concerned."""


async def test_a_race_resumed_after_a_crash_keeps_its_eliminations(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, settings
):
    doc = racing({"good": 0.95, "close": 0.93, "bad": 0.1}, n_rows=160)
    experiment = await create(client, owner, project_id, doc)
    experiment_id = uuid.UUID(experiment["id"])
    options = ExecutionOptions(policy=ProviderPolicy.server(settings), lease_seconds=5)
    finished: list[int] = []

    def crash_in_the_second_slice(progress, _outcome) -> None:
        finished.append(progress.finished)
        if progress.finished == 75:  # 60 runs of slice 1, then 15 of slice 2
            raise Crash

    with pytest.raises(BaseExceptionGroup):
        await run_experiment(
            app.state.engine, experiment_id, options=options, on_progress=crash_in_the_second_slice
        )
    crashed = await _counts(sessionmaker, experiment["id"])
    async with sessionmaker() as session:
        before = await store.eliminations(session, experiment_id)
    resumed = await run_experiment(app.state.engine, experiment_id, options=options)
    async with sessionmaker() as session:
        after = await store.eliminations(session, experiment_id)
    final = await _counts(sessionmaker, experiment["id"])

    assert [(e.config_hash, e.rows) for e in before] == [(e.config_hash, e.rows) for e in after]
    assert before[0].rows == 20
    assert crashed["mock:bad"] == {"completed": 20, "skipped": 140}
    assert final["mock:bad"] == {"completed": 20, "skipped": 140}
    assert final["mock:good"] == {"completed": 160}
    # Only what the crash left undone ran again.
    assert resumed.progress.finished == 160 + 160 + 20 - sum(
        c.get("completed", 0) for c in crashed.values()
    )


def tallied(doc: dict[str, Any], latency_ms: int = 20) -> dict[str, Any]:
    """``doc`` with its mock models answered by the ``tally`` provider, which counts calls."""
    doc["providers"]["tally"] = {"type": "tally", **doc["providers"].pop("mock")}
    doc["providers"]["tally"]["latency_ms"] = latency_ms
    models = doc["parameter_space"]["model"]
    doc["parameter_space"]["model"] = [m.replace("mock:", "tally:") for m in models]
    return doc


async def _crash_and_resume(app: FastAPI, settings, experiment_id: str, at: int) -> None:
    """Run the experiment until ``at`` runs have finished, stop it there as a dying process
    would (calls in flight are abandoned), then resume it to its end. The stop waits for a
    moment with a call in flight: on a busy machine the calls in flight can all finish in one
    turn of the event loop, before any other is sent, and a stop then abandons nothing."""
    options = ExecutionOptions(policy=ProviderPolicy.server(settings), lease_seconds=5)

    def crash(progress, _outcome) -> None:
        if progress.finished >= at and sum(tally.SENT.values()) > progress.finished:
            raise Crash

    with pytest.raises(BaseExceptionGroup):
        await run_experiment(
            app.state.engine, uuid.UUID(experiment_id), options=options, on_progress=crash
        )
    await run_experiment(app.state.engine, uuid.UUID(experiment_id), options=options)


async def _recorded_calls(sessionmaker, experiment_id: str) -> int:
    query = (
        select(func.count())
        .select_from(StageResult)
        .join(Run, Run.id == StageResult.run_id)
        .where(Run.experiment_id == uuid.UUID(experiment_id), StageResult.cached.is_(False))
    )
    async with sessionmaker() as session:
        return (await session.execute(query)).scalar_one()


async def test_calls_in_flight_when_the_process_dies_count_against_the_budget_on_resume(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker, settings
):
    tally.SENT.clear()
    doc = tallied(racing({"good": 0.95, "close": 0.93, "fair": 0.9}, budget={"calls": 60}))
    experiment = await create(client, owner, project_id, doc)

    await _crash_and_resume(app, settings, experiment["id"], at=30)
    recorded = await _recorded_calls(sessionmaker, experiment["id"])

    assert sum(tally.SENT.values()) <= 60
    assert sum(tally.SENT.values()) > recorded  # the abandoned calls were sent, never recorded
    assert sum(tally.SENT.values()) >= 54  # a crash costs at most a step of the budget


async def test_an_llm_judges_calls_count_against_the_budget_across_a_crash(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, settings
):
    tally.SENT.clear()
    doc = tallied(racing({"good": 0.95, "close": 0.93, "fair": 0.9}, budget={"calls": 40}))
    doc["scorers"].append(
        {"name": "grade", "type": "llm_judge", "model": "tally:judge", "rubric": "Is it right?"}
    )
    experiment = await create(client, owner, project_id, doc)

    await _crash_and_resume(app, settings, experiment["id"], at=10)

    assert tally.SENT["judge"] >= 10
    assert sum(tally.SENT.values()) <= 40


def test_only_a_config_with_failures_and_no_score_at_all_is_eliminated_for_them():
    scores = {"lead": {0: 1.0, 1: 1.0, 2: 0.0}, "some": {1: 0.0}, "none": {}}
    failed = {"some": 2, "none": 3}

    (decision,) = eliminate(scores, 0.05, failed)

    assert decision.config_hash == "none"
    assert decision.lost_to == "lead"
    assert decision.reason == ALL_FAILED
    assert decision.rows == 3
    assert eliminate({"a": {}, "b": {}}, 0.05, {"a": 5, "b": 5}) == []  # nobody to lose to
