"""SQLite as the engine sets it up: transactions are whole (a savepoint is part of its
transaction; a read sees one snapshot), writers queue for the write lock instead of failing,
and reads never wait for a writer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper.db.engine import create_engine, create_sessionmaker, read_only


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'engine.db'}")
    async with engine.begin() as conn:
        await conn.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine
    await engine.dispose()


async def count(engine: AsyncEngine) -> int:
    async with read_only(engine).connect() as conn:
        return (await conn.execute(text("SELECT count(*) FROM t"))).scalar_one()


async def test_a_released_savepoint_is_undone_with_its_transaction(engine: AsyncEngine):
    async with create_sessionmaker(engine)() as session:
        async with session.begin_nested():
            await session.execute(text("INSERT INTO t VALUES (1)"))
        await session.rollback()

    assert await count(engine) == 0


async def test_a_read_transaction_sees_one_snapshot(engine: AsyncEngine):
    async with create_sessionmaker(read_only(engine))() as reading:
        before = (await reading.execute(text("SELECT count(*) FROM t"))).scalar_one()
        async with engine.begin() as conn:
            await conn.execute(text("INSERT INTO t VALUES (1)"))
        again = (await reading.execute(text("SELECT count(*) FROM t"))).scalar_one()

    assert (before, again) == (0, 0)
    assert await count(engine) == 1


async def test_a_writer_that_read_first_waits_for_another_writer_instead_of_failing(
    engine: AsyncEngine,
):
    sessions = create_sessionmaker(engine)
    first_read = asyncio.Event()

    async def read_then_write(value: int, wait: asyncio.Event | None) -> None:
        async with sessions() as session:
            await session.execute(text("SELECT count(*) FROM t"))
            first_read.set()
            if wait is not None:
                await wait.wait()
            await asyncio.sleep(0.2)  # the other writer tries meanwhile
            await session.execute(text("INSERT INTO t VALUES (:x)"), {"x": value})
            await session.commit()

    await asyncio.gather(read_then_write(1, None), read_then_write(2, first_read))

    assert await count(engine) == 2


async def test_reads_do_not_wait_for_a_writer(engine: AsyncEngine):
    async with engine.begin() as writing:
        await writing.execute(text("INSERT INTO t VALUES (1)"))
        seen = await asyncio.wait_for(count(engine), 2)

    assert seen == 0
