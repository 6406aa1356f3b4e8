"""The batched run sink and cache on the real databases: nothing recorded is ever lost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from promptlooper.sweeps import service
from promptlooper.sweeps.engine.cache import CachedResponse
from promptlooper.sweeps.engine.persistence import RunOutcome, StageOutcome
from promptlooper.sweeps.execution import pending_tasks, prepare_runs
from promptlooper.sweeps.models import CacheEntry, Run, StageResult
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.spec import parse_spec
from promptlooper.sweeps.store import SqlResponseCache, SqlRunSink
from tests.sweeps.conftest import ROWS, create, document


def outcome(run_id: uuid.UUID, index: int) -> RunOutcome:
    now = datetime.now(UTC)
    stage = StageOutcome(
        0, f"prompt {index}", None, f"reply {index}", "m", "mock", {}, 3, 1, 1.0, 0.0, False
    )
    return RunOutcome(run_id, "completed", now, now, [stage], {"accuracy": 1.0}, 1.0)


async def test_outcomes_recorded_while_the_writer_ticks_are_all_written(
    client, app, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, document(dataset={"rows": ROWS * 20}))
    engine = app.state.engine
    async with sessionmaker() as session:
        exp = await service.get_experiment(session, _admin(), uuid.UUID(experiment["id"]))
        plan = compile_plan(parse_spec(exp.spec))
        await prepare_runs(session, exp, plan)
        await session.commit()
        tasks = await pending_tasks(session, exp, plan, use_cache=False)
    sink = SqlRunSink(engine, batch_size=7, interval=0.001)

    async def producer(chunk: list) -> None:
        for i, task in enumerate(chunk):
            await sink.record(outcome(task.run_id, i))
            await asyncio.sleep(0)

    await asyncio.gather(*(producer(tasks[i::8]) for i in range(8)))
    await sink.flush()

    async with sessionmaker() as session:
        eid = uuid.UUID(experiment["id"])
        statuses = dict(
            (
                await session.execute(
                    select(Run.status, func.count())
                    .where(Run.experiment_id == eid)
                    .group_by(Run.status)
                )
            ).all()
        )
        stages = await session.scalar(
            select(func.count()).select_from(StageResult).join(Run).where(Run.experiment_id == eid)
        )
    assert statuses == {"completed": len(tasks)}
    assert stages == len(tasks) == 480


async def test_cache_lookups_coalesce_and_new_entries_are_written_with_the_runs(app, db_url):
    engine = app.state.engine
    cache = SqlResponseCache(engine)
    await cache.put("k1", CachedResponse("one", "m", 1, 1))
    sink = SqlRunSink(engine, cache=cache)
    await sink.flush()

    fresh = SqlResponseCache(engine)
    await fresh.preload(["k1", "k2"])
    results = await asyncio.gather(*(fresh.get(k) for k in ["k1", "k1", "k2", "k3"]))

    assert results[0] == results[1] == CachedResponse("one", "m", 1, 1)
    assert results[2] is None
    assert results[3] is None
    assert (fresh.stats.hits, fresh.stats.misses) == (2, 2)
    await SqlRunSink(engine, cache=fresh).flush()
    async with engine.connect() as conn:
        hits = await conn.scalar(select(CacheEntry.hits).where(CacheEntry.key == "k1"))
    assert hits == 2


def _admin():
    from promptlooper.auth.principal import Principal

    return Principal.local_operator()
