"""The leaderboard the database aggregates agrees with the one ``summarise`` computes."""

from __future__ import annotations

import random
import uuid

import pytest

from promptlooper.db.base import utcnow
from promptlooper.sweeps import service
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.totals import leaderboard
from tests.sweeps.conftest import create, document


async def _random_runs(sessionmaker, experiment_id: uuid.UUID, seed: int) -> None:
    """Runs of every kind: pending, failed, completed with one, two or no scores, cached
    ones, one or two stages; configs with odd and even numbers of timed runs."""
    rng = random.Random(seed)
    now = utcnow()
    async with sessionmaker() as session:
        for c in range(5):
            digest = f"{c:064x}"
            for row in range(rng.randint(1, 9)):
                status = rng.choice(["completed"] * 4 + ["failed", "pending"])
                run = Run(
                    experiment_id=experiment_id, config_hash=digest,
                    parameters={"config": c}, config={}, row_index=row, status=status,
                    cached=status == "completed" and rng.random() < 0.2,
                    duration_ms=rng.uniform(1, 50), created_at=now,
                )  # fmt: skip
                session.add(run)
                await session.flush()
                for index in range(rng.randint(0, 2)):
                    stage = StageResult(
                        run_id=run.id, stage_index=index, prompt_sent="p", response_raw="r",
                        model_used="m", provider="mock", params={},
                        latency_ms=rng.choice([5.0, 10.0, rng.uniform(0, 100)]),
                    )  # fmt: skip
                    session.add(stage)
                for name in ("accuracy", "brevity", "unweighted"):
                    if c != 4 and rng.random() < 0.7:  # config 4: never scored
                        session.add(Score(run_id=run.id, scorer_name=name, value=rng.random()))
        await session.commit()


@pytest.mark.parametrize("seed", [1, 2])
async def test_the_aggregated_leaderboard_equals_the_summary(
    client, owner, project_id, sessionmaker, seed
):
    created = await create(client, owner, project_id, document())
    experiment_id = uuid.UUID(created["id"])
    await _random_runs(sessionmaker, experiment_id, seed)

    async with sessionmaker() as session:
        experiment = await session.get(Experiment, experiment_id)
        assert experiment is not None
        expected = await service.summary(session, experiment)
        board = await leaderboard(session, experiment)

    assert board.counts == expected.counts
    assert board.scorers == list(expected.scorers)
    assert [c.config_hash for c in board.configs] == [c.config_hash for c in expected.configs]
    for got, want in zip(board.configs, expected.configs, strict=True):
        assert got.parameters == want.parameters
        assert (got.completed, got.failed) == (want.completed, want.failed)
        assert got.score == pytest.approx(want.score)
        assert got.scores == pytest.approx(want.scores)
        assert got.p50_latency_ms == pytest.approx(want.p50_latency_ms)
