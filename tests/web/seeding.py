"""Finished experiments written straight to the database, at any size: for the tests that
count statements per page and for ``benchmarks/ui_pages.py``."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.sweeps.models import Experiment, Run, Score, StageResult


async def seed_experiment(
    sessionmaker: async_sessionmaker[AsyncSession],
    project_id: uuid.UUID,
    *,
    configs: int,
    rows: int = 1,
    response: str = "",
    name: str = "seeded",
    noisy: bool = False,
) -> tuple[uuid.UUID, list[str], list[uuid.UUID]]:
    """A completed experiment of ``configs`` × ``rows`` runs, each with one stage answering
    ``response`` (or its own text) and two scores; returns its id, its config hashes best
    first, and its run ids. ``noisy`` scores vary from row to row as real ones do (accuracy
    passes or fails with the config's quality, brevity is uniform), seeded: the config hashes
    then come best first only on average."""
    rng = random.Random(0)
    now = datetime.now(UTC)
    experiment_id = uuid.uuid4()
    hashes = [f"{index:08x}" + "ab" * 28 for index in range(configs)]
    prompts = [f"Prompt number {index}: {{{{ input }}}}" for index in range(configs)]
    run_rows, stage_rows, score_rows = [], [], []
    for index, digest in enumerate(hashes):
        parameters = {"prompt": prompts[index], "temperature": round(index / configs, 3)}
        for row in range(rows):
            run_id = uuid.uuid4()
            text = response or f"Answer {row} of config {index % 7}"
            run_rows.append(
                {
                    "id": run_id,
                    "experiment_id": experiment_id,
                    "config_hash": digest,
                    "parameters": parameters,
                    "config": {
                        "prompt": prompts[index],
                        "model": "mock:small",
                        "input_data": {"input": f"row {row}"},
                    },
                    "row_index": row,
                    "repeat": 0,
                    "status": "completed",
                    "duration_ms": 100.0 + index,
                    "tokens_in": 10,
                    "tokens_out": 20,
                    "cost": 0.001,
                    "cached": False,
                    "sanitized": False,
                    "started_at": now,
                    "completed_at": now,
                    "created_at": now,
                }
            )
            stage_rows.append(
                {
                    "id": uuid.uuid4(),
                    "run_id": run_id,
                    "stage_index": 0,
                    "prompt_sent": f"Prompt number {index}: row {row}",
                    "system_sent": None,
                    "response_raw": text,
                    "model_used": "small (simulated)",
                    "provider": "mock",
                    "params": {},
                    "tokens_in": 10,
                    "tokens_out": 20,
                    "latency_ms": 100.0,
                    "cost": 0.001,
                    "cached": False,
                    "created_at": now,
                }
            )
            quality = 1.0 - index / max(configs, 1)
            values = (quality, 0.5)
            if noisy:
                values = (float(rng.random() < quality), rng.random())
            for scorer, value in zip(("accuracy", "brevity"), values, strict=True):
                score = {"id": uuid.uuid4(), "run_id": run_id, "scorer_name": scorer}
                score_rows.append({**score, "value": value})
    async with sessionmaker() as session:
        session.add(
            Experiment(
                id=experiment_id,
                project_id=project_id,
                name=name,
                description="",
                spec={"dataset": {"rows": [{"input": f"row {r}"} for r in range(rows)]}},
                parameter_space={"prompt": prompts, "temperature": [0.0]},
                scoring_config={"weights": {"accuracy": 0.7, "brevity": 0.3}},
                status="completed",
                total_runs=configs * rows,
            )
        )
        await session.flush()
        for table, values in ((Run, run_rows), (StageResult, stage_rows), (Score, score_rows)):
            for start in range(0, len(values), 2000):
                await session.execute(insert(table), values[start : start + 2000])
        await session.commit()
    return experiment_id, hashes, [r["id"] for r in run_rows]
