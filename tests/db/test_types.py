"""Portable column types keep their Python meaning on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Column, MetaData, Table, Uuid, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper.db.types import JSONType, UTCDateTime
from tests.db.conftest import created

metadata = MetaData()
probe = Table(
    "type_probe",
    metadata,
    Column("id", Uuid, primary_key=True),
    Column("at", UTCDateTime),
    Column("doc", JSONType),
)


@pytest.fixture
async def probe_table(engine: AsyncEngine):
    async with created(engine, metadata):
        yield probe


async def test_uuid_timestamp_and_json_round_trip(engine: AsyncEngine, probe_table: Table):
    row_id = uuid.uuid4()
    at = datetime(2026, 5, 1, 12, 30, tzinfo=timezone(timedelta(hours=2)))
    doc = {"model": "openai:small", "params": {"temperature": 0.7}, "tags": ["a", None, 3]}
    async with engine.begin() as conn:
        await conn.execute(insert(probe_table).values(id=row_id, at=at, doc=doc))

    async with engine.connect() as conn:
        row = (await conn.execute(select(probe_table))).one()

    assert row.id == row_id
    assert row.at == at
    assert row.at.tzinfo is not None
    assert row.at.utcoffset() == timedelta(0)
    assert row.doc == doc


async def test_naive_datetimes_are_refused(engine: AsyncEngine, probe_table: Table):
    from sqlalchemy.exc import StatementError

    with pytest.raises(StatementError, match="naive datetime"):
        async with engine.begin() as conn:
            await conn.execute(
                insert(probe_table).values(id=uuid.uuid4(), at=datetime(2026, 1, 1), doc={})
            )


def test_utc_is_used_for_defaults():
    from promptlooper.db.base import utcnow

    assert utcnow().tzinfo is UTC
