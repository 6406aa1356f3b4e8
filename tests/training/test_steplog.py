"""The step log: steps written in order, a batch to a transaction, rewinds and restarts kept
straight, a deleted run's entries dropped without harm to others'."""

from __future__ import annotations

import asyncio
import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth.principal import Principal
from promptlooper.training import service, steplog
from promptlooper.training.models import TrainingRun, TrainingStep
from promptlooper.training.registry import load_registry
from promptlooper.training.schemas import OptimResult, RunCreate
from promptlooper.training.steplog import StepLog
from tests.factories import make_user


def step(n: int, loss: float = 1.0) -> OptimResult:
    return OptimResult(step=n, grad_norm=0.5, learning_rate=1e-4, loss=loss, tokens=10)


async def new_run(sessionmaker: async_sessionmaker[AsyncSession]) -> uuid.UUID:
    user = await make_user(sessionmaker)
    owner = Principal(user_id=user.id, username=user.username, is_admin=False, method="api_key")
    async with sessionmaker() as session:
        run = await service.create_run(
            session, owner, load_registry(), RunCreate(base_model="tiny-test")
        )
        await session.commit()
        return run.id


async def logged(
    sessionmaker: async_sessionmaker[AsyncSession], run_id: uuid.UUID
) -> tuple[list[tuple[int, float]], int]:
    """The run's (step, loss) rows and its step counter, as the database has them."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(TrainingStep.step, TrainingStep.loss)
            .where(TrainingStep.run_id == run_id)
            .order_by(TrainingStep.step)
        )
        run = await session.get(TrainingRun, run_id)
        assert run is not None
        return [tuple(r) for r in rows], run.step


async def test_steps_wait_for_a_flush_and_are_then_all_written(sessionmaker) -> None:
    run = await new_run(sessionmaker)
    log = StepLog(sessionmaker)
    for n in (1, 2, 3):
        log.add(run, step(n, loss=n / 10))

    assert await logged(sessionmaker, run) == ([], 0)
    await log.flush()
    assert await logged(sessionmaker, run) == ([(1, 0.1), (2, 0.2), (3, 0.3)], 3)


async def test_the_timer_writes_without_being_asked(sessionmaker, monkeypatch) -> None:
    monkeypatch.setattr(steplog, "FLUSH_SECONDS", 0.01)
    run = await new_run(sessionmaker)
    log = StepLog(sessionmaker)
    log.add(run, step(1))
    for _ in range(500):
        rows, _counter = await logged(sessionmaker, run)
        if rows:
            break
        await asyncio.sleep(0.01)
    assert await logged(sessionmaker, run) == ([(1, 1.0)], 1)


async def test_a_rewind_replaces_the_later_branch_in_order(sessionmaker) -> None:
    run = await new_run(sessionmaker)
    log = StepLog(sessionmaker)
    for n in range(1, 6):
        log.add(run, step(n))
    await log.rewind(run, 3)  # load_state back to step 3, flushed at once
    assert await logged(sessionmaker, run) == ([(1, 1.0), (2, 1.0), (3, 1.0)], 3)

    log.add(run, step(4, loss=0.4))
    await log.flush()
    assert await logged(sessionmaker, run) == ([(1, 1.0), (2, 1.0), (3, 1.0), (4, 0.4)], 4)


async def test_steps_after_a_restart_replace_the_lost_ones(sessionmaker) -> None:
    run = await new_run(sessionmaker)
    before = StepLog(sessionmaker)
    for n in range(1, 5):
        before.add(run, step(n))
    await before.flush()

    after = StepLog(sessionmaker)  # a new server; the run resumed from a checkpoint at step 2
    after.add(run, step(3, loss=0.3))
    await after.flush()
    assert await logged(sessionmaker, run) == ([(1, 1.0), (2, 1.0), (3, 0.3)], 3)


async def test_a_deleted_runs_entries_are_dropped_and_others_written(sessionmaker) -> None:
    gone, kept = await new_run(sessionmaker), await new_run(sessionmaker)
    log = StepLog(sessionmaker)
    log.add(gone, step(1))
    log.add(kept, step(1))
    async with sessionmaker() as session:
        await session.delete(await session.get(TrainingRun, gone))
        await session.commit()

    await log.flush()
    assert await logged(sessionmaker, kept) == ([(1, 1.0)], 1)
    async with sessionmaker() as session:
        orphans = await session.scalars(select(TrainingStep).where(TrainingStep.run_id == gone))
        assert list(orphans) == []
