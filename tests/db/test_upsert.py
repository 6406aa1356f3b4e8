"""Bulk inserts keep every value exactly, on SQLite and on PostgreSQL (where the rows travel
as one JSON document), and a clash leaves nothing half written."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Uuid,
    false,
    select,
    text,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper.db.types import JSONType, UTCDateTime
from promptlooper.db.upsert import insert_ignore, insert_new, insert_or_add, insert_rows
from tests.db.conftest import created

metadata = MetaData()
rows_table = Table(
    "upsert_probe",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("ref", Uuid),
    Column("at", UTCDateTime),
    Column("doc", JSONType),
    Column("big", BigInteger),
    Column("ratio", Float),
)
flags = Table(
    "upsert_flags",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("flag", Boolean, default=True, server_default=false()),
)
counters = Table(
    "upsert_counters",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("hits", Integer),
    Column("total", Float),
)


@pytest.fixture
async def tables(engine: AsyncEngine):
    async with created(engine, metadata):
        yield


def row(key: str, **changes) -> dict:
    return {
        "key": key,
        "ref": uuid.uuid4(),
        "at": datetime(2026, 11, 22, 9, 30, 15, 123456, tzinfo=UTC),
        "doc": None,
        "big": 1,
        "ratio": 0.5,
    } | changes


async def stored(engine: AsyncEngine) -> dict[str, dict]:
    async with engine.connect() as conn:
        result = await conn.execute(select(rows_table))
        return {r.key: r._asdict() for r in result}


async def test_every_value_comes_back_exactly(engine: AsyncEngine, tables):
    tricky = 'quote " backslash \\ newline \n tab \t emoji 🧪 accents éü'
    rows = [
        row(tricky),
        row(
            "offsets",
            at=datetime(2026, 1, 2, 3, 4, 5, 6, tzinfo=timezone(timedelta(hours=-7))),
            doc={"nested": {"list": [1, 2.5, None, True, "é"]}, "text": tricky},
            big=2**62,
            ratio=0.1 + 0.2,
        ),
        row("tiny", ratio=1e-300, doc=["a", {"b": None}]),
        row("wide", doc={"beyond 64 bits": 2**70, "negative": -(2**65)}),
        # Text a transport could take apart: NULL spelt out, punctuation, blanks, escapes.
        row("null", doc="null", ref=None, at=None, big=None, ratio=None),
        row("NULL"),
        row(""),
        row(" {a,b} \\u0041 "),
        row("back\\slash", doc={"escapes": "\\n is not \n", "quote": '"{}"'}),
    ]
    async with engine.begin() as conn:
        await insert_rows(conn, rows_table, rows)

    kept = await stored(engine)

    assert kept.keys() == {r["key"] for r in rows}
    for expected in rows:
        got = kept[expected["key"]]
        assert got["ref"] == expected["ref"]
        assert got["at"] == expected["at"]  # the same instant, whatever the offset
        assert got["doc"] == expected["doc"]
        assert got["big"] == expected["big"]
        assert got["ratio"] == expected["ratio"]  # bit for bit


async def test_a_uuid_read_back_from_the_driver_can_be_written_again(engine: AsyncEngine, tables):
    async with engine.begin() as conn:
        await insert_rows(conn, rows_table, [row("original")])
    async with engine.connect() as conn:
        ref = (await conn.execute(select(rows_table.c.ref))).scalar_one()

    async with engine.begin() as conn:
        await insert_rows(conn, rows_table, [row("copy", ref=ref)])

    kept = await stored(engine)
    assert kept["copy"]["ref"] == kept["original"]["ref"]


async def test_a_clash_fails_the_whole_plain_insert(engine: AsyncEngine, tables):
    async with engine.begin() as conn:
        await insert_rows(conn, rows_table, [row("a")])

    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await insert_rows(conn, rows_table, [row("b"), row("a"), row("c")])

    assert set(await stored(engine)) == {"a"}


async def test_new_rows_come_back_exactly_and_a_clash_fails_the_batch(engine: AsyncEngine, tables):
    """``insert_new`` (COPY on PostgreSQL) writes what ``insert_rows`` writes, JSON included,
    and a row already there fails its whole batch with the same error."""
    rows = [
        row("plain"),
        row("doc", doc={"nested": [1, 2.5, None, "é"], "wide": 2**70}, big=2**62),
    ]
    async with engine.begin() as conn:
        await insert_new(conn, rows_table, rows)
    with pytest.raises(IntegrityError):
        async with engine.begin() as conn:
            await insert_new(conn, rows_table, [row("other"), row("plain")])

    kept = await stored(engine)
    assert set(kept) == {"plain", "doc"}
    for expected in rows:
        assert {k: kept[expected["key"]][k] for k in expected} == expected
    async with engine.connect() as conn:  # stored as every other write stores them
        found = select(rows_table.c.key).where(
            rows_table.c.ref == rows[1]["ref"], rows_table.c.at == rows[1]["at"]
        )
        assert (await conn.execute(found)).scalars().all() == ["doc"]


async def test_a_column_left_out_of_new_rows_takes_the_database_default(
    engine: AsyncEngine, tables
):
    """As ``COPY`` does on PostgreSQL: the statement names the given columns only, so a
    Python-side default never applies, on either database."""
    async with engine.begin() as conn:
        await insert_new(conn, flags, [{"key": "a"}, {"key": "b"}])

    async with engine.connect() as conn:
        found = await conn.execute(select(flags.c.key, flags.c.flag).order_by(flags.c.key))
        assert [tuple(r) for r in found] == [("a", False), ("b", False)]


async def test_insert_ignore_skips_clashes_and_returns_what_it_inserted(
    engine: AsyncEngine, tables
):
    async with engine.begin() as conn:
        await insert_rows(conn, rows_table, [row("a", big=1)])

    async with engine.begin() as conn:
        inserted = await insert_ignore(
            conn, rows_table, [row("a", big=2), row("b", big=3)], returning=("key", "big")
        )

    assert [tuple(r) for r in inserted] == [("b", 3)]
    assert {k: r["big"] for k, r in (await stored(engine)).items()} == {"a": 1, "b": 3}


async def test_insert_or_add_adds_to_the_row_already_there(engine: AsyncEngine, tables):
    async with engine.begin() as conn:
        await insert_or_add(conn, counters, ["key"], [{"key": "x", "hits": 2, "total": 1.5}])
    async with engine.begin() as conn:
        after = await insert_or_add(
            conn,
            counters,
            ["key"],
            [{"key": "x", "hits": 3, "total": 0.25}, {"key": "y", "hits": 1, "total": 1.0}],
            returning=("key", "hits", "total"),
        )

    assert sorted(tuple(r) for r in after) == [("x", 5, 1.75), ("y", 1, 1.0)]


async def test_a_nul_character_is_refused_and_nothing_is_written(engine: AsyncEngine, tables):
    """PostgreSQL text cannot hold NUL: the statement fails as a whole, as it did when the
    rows travelled as arrays; callers refuse NUL before (ingestion answers 422)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite stores NUL in text")
    with pytest.raises(Exception, match=r"(?i)unicode|0x00|null character"):
        async with engine.begin() as conn:
            await insert_rows(conn, rows_table, [row("fine"), row("bad\x00key")])

    async with engine.connect() as conn:
        assert (await conn.execute(text("select count(*) from upsert_probe"))).scalar() == 0
