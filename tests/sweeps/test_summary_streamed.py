"""The leaderboard read from the database a page at a time equals the one computed from every
run held in memory, and its memory does not grow with the number of configs."""

from __future__ import annotations

import dataclasses
import random
import tracemalloc
import uuid
from typing import Any

from sqlalchemy import insert

from promptlooper.sweeps import service
from promptlooper.sweeps.engine.runner import weighted_score
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.summary import ExperimentSummary, RunRow, summarise
from tests.sweeps.conftest import create, document

WEIGHTS = {"exact": 0.7, "quality": 0.3}


def _normal(value: Any) -> Any:
    """``value`` made comparable: floats to 12 digits, row scores and results as plain data."""
    if isinstance(value, float):
        return round(value, 12)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _normal(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if hasattr(value, "items"):
        return {key: _normal(found) for key, found in value.items()}
    if isinstance(value, list | tuple):
        return [_normal(found) for found in value]
    return value


def _as_data(summary: ExperimentSummary) -> dict[str, Any]:
    data = {f.name: getattr(summary, f.name) for f in dataclasses.fields(summary)}
    data["configs"] = [
        {f.name: getattr(c, f.name) for f in dataclasses.fields(c)} for c in summary.configs
    ]
    for config in data["configs"]:
        config["row_scores"] = dict(config["row_scores"])
        del config["best_run_id"]  # one of the runs scoring ``best_run_score``, checked apart
    return _normal(data)


async def _experiment(client, owner, project_id, sessionmaker) -> Experiment:
    created = await create(client, owner, project_id, document())
    async with sessionmaker() as session:
        experiment = await session.get(Experiment, uuid.UUID(created["id"]))
    assert experiment is not None
    return experiment


async def _store_runs(
    sessionmaker, experiment: Experiment, configs: int, rows: int, repeats: int, seed: int
) -> tuple[list[RunRow], dict[uuid.UUID, dict[str, float]]]:
    """Runs of every kind (completed, failed, pending, cached, a scorer missing here and
    there), stored, and the same runs as the in-memory summary takes them."""
    draw = random.Random(seed)
    runs: list[RunRow] = []
    scores: dict[uuid.UUID, dict[str, float]] = {}
    run_values, score_values, stage_values = [], [], []
    for config in range(configs):
        digest = f"{config:02d}-{draw.random():.6f}"
        parameters = {"model": f"mock:{config}", "temperature": config / 10}
        skill = draw.uniform(0.3, 0.9)
        for row in range(rows):
            for repeat in range(repeats):
                status = draw.choices(["completed", "failed", "pending"], [90, 7, 3])[0]
                cached = status == "completed" and draw.random() < 0.1
                latency = None if status != "completed" else round(draw.uniform(5, 900), 3)
                run = RunRow(
                    uuid.uuid4(),
                    digest,
                    parameters,
                    status,
                    draw.uniform(10, 1000) if status == "completed" else None,
                    draw.randrange(100),
                    draw.randrange(50),
                    draw.uniform(0, 0.01),
                    cached,
                    latency_ms=latency,
                    row_index=row,
                    repeat=repeat,
                )
                runs.append(run)
                run_values.append(
                    {
                        "id": run.id,
                        "experiment_id": experiment.id,
                        "config_hash": digest,
                        "parameters": parameters,
                        "config": parameters,
                        "row_index": row,
                        "repeat": repeat,
                        "status": status,
                        "duration_ms": run.duration_ms,
                        "tokens_in": run.tokens_in,
                        "tokens_out": run.tokens_out,
                        "cost": run.cost,
                        "cached": cached,
                    }
                )
                if status != "completed":
                    continue
                values = {"exact": float(draw.random() < skill)}
                if draw.random() < 0.9:
                    values["quality"] = round(draw.uniform(0, 1), 6)
                scores[run.id] = values
                score_values += [
                    {"id": uuid.uuid4(), "run_id": run.id, "scorer_name": n, "value": v}
                    for n, v in values.items()
                ]
                assert latency is not None
                first = round(draw.uniform(0, latency), 3)
                for stage, part in enumerate((first, latency - first)):
                    stage_values.append(
                        {
                            "id": uuid.uuid4(),
                            "run_id": run.id,
                            "stage_index": stage,
                            "prompt_sent": "p",
                            "response_raw": "r",
                            "model_used": parameters["model"],
                            "provider": "mock",
                            "params": {},
                            "latency_ms": part,
                        }
                    )
    async with sessionmaker() as session:
        for model, values in ((Run, run_values), (Score, score_values)):
            await session.execute(insert(model), values)
        await session.execute(insert(StageResult), stage_values)
        await session.commit()
    return runs, scores


async def test_the_paged_leaderboard_equals_the_one_over_every_run(
    client, owner, project_id, sessionmaker, monkeypatch
):
    experiment = await _experiment(client, owner, project_id, sessionmaker)
    runs, scores = await _store_runs(sessionmaker, experiment, 5, 23, 3, seed=7)
    monkeypatch.setattr(service, "SUMMARY_PAGE", 17)  # pages end inside rows and configs

    async with sessionmaker() as session:
        stored = await session.get(Experiment, experiment.id)
        assert stored is not None
        stored.scoring_config = {"weights": WEIGHTS}
        paged = await service.summary(session, stored)
    random.Random(1).shuffle(runs)
    in_memory = summarise(runs, scores, WEIGHTS)

    assert paged.counts["failed"]
    assert paged.counts["pending"]
    assert paged.cached_runs
    assert any(c.flaky_rows for c in paged.configs)
    assert [c.versus_leader is not None for c in paged.ranked] == [False] + [True] * 4
    assert _as_data(paged) == _as_data(in_memory)
    for config in paged.configs:
        assert config.best_run_id is not None
        best = weighted_score(scores[config.best_run_id], WEIGHTS)
        assert best == config.best_run_score


async def _summary_peak(sessionmaker, experiment: Experiment) -> int:
    async with sessionmaker() as session:
        stored = await session.get(Experiment, experiment.id)
        assert stored is not None
        tracemalloc.start()
        try:
            summary = await service.summary(session, stored)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert len(summary.configs) > 1
    return peak


async def test_the_leaderboard_holds_one_config_at_a_time(
    client, owner, project_id, sessionmaker, monkeypatch
):
    """Four times the configs (as many runs each) leave the summary's peak nearly as it was:
    what grows is one packed score per row and config, not every run."""
    monkeypatch.setattr(service, "SUMMARY_PAGE", 100)
    peaks = []
    for count in (3, 12):
        experiment = await _experiment(client, owner, project_id, sessionmaker)
        await _store_runs(sessionmaker, experiment, count, 300, 1, seed=count)
        peaks.append(await _summary_peak(sessionmaker, experiment))

    assert peaks[1] < 1.6 * peaks[0], peaks
