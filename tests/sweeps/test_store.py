"""The batched run sink and cache on the real databases: nothing recorded is ever lost."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

from sqlalchemy import func, select

from promptlooper.sweeps import service, store
from promptlooper.sweeps.engine.cache import CachedResponse
from promptlooper.sweeps.engine.persistence import RunOutcome, StageOutcome
from promptlooper.sweeps.execution import pending_tasks, prepare_runs
from promptlooper.sweeps.models import CacheEntry, Run, StageResult
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.spec import parse_spec
from promptlooper.sweeps.store import CacheBound, SqlResponseCache, SqlRunSink
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
    await prepare_runs(sessionmaker, exp, plan)
    tasks = [task async for task in pending_tasks(engine, exp, plan, use_cache=False)]
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


async def test_a_full_batch_is_written_though_its_worker_is_cancelled_mid_write(
    client, app, owner, project_id, sessionmaker, monkeypatch
):
    """As when a sweep is cancelled: the worker stops waiting, the batch still commits, and
    the connection it used is free for the next writer."""
    experiment = await create(client, owner, project_id, document())
    engine = app.state.engine
    async with sessionmaker() as session:
        exp = await service.get_experiment(session, _admin(), uuid.UUID(experiment["id"]))
    plan = compile_plan(parse_spec(exp.spec))
    await prepare_runs(sessionmaker, exp, plan)
    tasks = [task async for task in pending_tasks(engine, exp, plan, use_cache=False)]
    sink = SqlRunSink(engine, batch_size=len(tasks) - 1, interval=60)
    for i, task in enumerate(tasks[:-2]):
        await sink.record(outcome(task.run_id, i))
    writing, original = asyncio.Event(), store.write_outcomes

    async def write_outcomes(conn, batch) -> None:
        writing.set()
        await asyncio.sleep(0.05)  # the transaction is open: the worker is cancelled now
        await original(conn, batch)

    monkeypatch.setattr(store, "write_outcomes", write_outcomes)
    worker = asyncio.create_task(sink.record(outcome(tasks[-2].run_id, len(tasks) - 2)))
    await writing.wait()
    worker.cancel()

    await asyncio.wait_for(sink.flush(), 10)
    await asyncio.wait_for(sink.record(outcome(tasks[-1].run_id, len(tasks) - 1)), 10)
    await asyncio.wait_for(sink.flush(), 10)

    assert worker.cancelled()
    async with sessionmaker() as session:
        statuses = (
            await session.scalars(select(Run.status).where(Run.experiment_id == exp.id))
        ).all()
    assert statuses == ["completed"] * len(tasks)


async def test_cache_lookups_coalesce_and_new_entries_are_written_with_the_runs(app, project_id):
    engine = app.state.engine
    project = uuid.UUID(project_id)
    cache = SqlResponseCache(engine, project)
    await cache.put("k1", CachedResponse("one", "m", 1, 1))
    sink = SqlRunSink(engine, cache=cache)
    await sink.flush()

    fresh = SqlResponseCache(engine, project)
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


async def _project(client, owner, name: str) -> uuid.UUID:
    response = await client.post("/api/projects", json={"name": name}, headers=owner.headers)
    return uuid.UUID(response.json()["id"])


async def _fill(cache: SqlResponseCache, engine, keys: list[str], text: str = "answer") -> None:
    for key in keys:
        await cache.put(key, CachedResponse(f"{text} {key}", "m"))
    await SqlRunSink(engine, cache=cache).flush()


async def _stored(engine) -> dict[tuple[uuid.UUID, str], int]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(CacheEntry.project_id, CacheEntry.key, CacheEntry.size))
        return {(project, key): size for project, key, size in rows}


async def test_a_project_reads_only_its_own_entries(app, client, owner, project_id):
    engine = app.state.engine
    mine, theirs = uuid.UUID(project_id), await _project(client, owner, "other")
    await _fill(SqlResponseCache(engine, mine), engine, ["same-key"], text="mine")
    await _fill(SqlResponseCache(engine, theirs), engine, ["same-key"], text="theirs")

    read_mine = await SqlResponseCache(engine, mine).get("same-key")
    read_theirs = await SqlResponseCache(engine, theirs).get("same-key")
    nowhere = await SqlResponseCache(engine, await _project(client, owner, "empty")).get("same-key")

    assert (read_mine.text, read_theirs.text) == ("mine same-key", "theirs same-key")
    assert nowhere is None


async def test_eviction_keeps_the_entry_bound_and_drops_the_least_recently_used(
    app, client, owner, project_id
):
    engine = app.state.engine
    bound = CacheBound(max_entries=10)
    first, second = uuid.UUID(project_id), await _project(client, owner, "second")
    await _fill(SqlResponseCache(engine, first, bound), engine, [f"a{i}" for i in range(8)])
    # Served again: a0 becomes the most recently used of the first project's entries.
    reader = SqlResponseCache(engine, first, bound)
    assert await reader.get("a0") is not None
    await SqlRunSink(engine, cache=reader).flush()

    await _fill(SqlResponseCache(engine, second, bound), engine, [f"b{i}" for i in range(6)])
    stored = await _stored(engine)

    assert len(stored) <= 10
    assert {key for _, key in stored} >= {"a0", *(f"b{i}" for i in range(6))}
    assert (first, "a1") not in stored  # the least recently used went first


async def test_eviction_keeps_the_byte_bound(app, project_id):
    engine = app.state.engine
    project = uuid.UUID(project_id)
    bound = CacheBound(max_bytes=1000)
    for batch in range(5):
        keys = [f"k{batch}-{i}" for i in range(3)]
        cache = SqlResponseCache(engine, project, bound)
        for key in keys:
            await cache.put(key, CachedResponse("é" * 50 + key, "m"))  # 100 bytes and the key
        await SqlRunSink(engine, cache=cache).flush()
    stored = await _stored(engine)

    assert sum(stored.values()) <= 1000
    assert {key for _, key in stored} >= {f"k4-{i}" for i in range(3)}
    assert all(size == 100 + len(key) for (_, key), size in stored.items())


def test_a_cache_past_its_bound_is_trimmed_to_nine_tenths():
    bound = CacheBound(max_entries=100, max_bytes=10_000)

    assert bound.excess(100, 10_000) is None
    assert bound.excess(101, 0) == (11, 0)
    assert bound.excess(0, 10_001) == (0, 1001)
    assert CacheBound().excess(10**9, 10**12) is None


def _admin():
    from promptlooper.auth.principal import Principal

    return Principal.local_operator()
