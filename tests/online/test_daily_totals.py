"""Results by day: ingestion counts each session once on the day it became exposed and once on
the day it became converting; the series add them up; migration 0012 fills the same counts
from the events already stored."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper import migrations
from promptlooper.db.engine import create_engine
from promptlooper.db.upsert import insert_rows
from promptlooper.online import tallies, timeline
from promptlooper.online.models import DailyTotals, ExperimentEvent
from tests.conftest import BACKENDS, drop_database, fresh_database

DAY = datetime(2026, 11, 2, 12, tzinfo=UTC)
KEY = "hero"


def _event(variant: str, session_id: str, event_type: str, days: int, **extra) -> dict:
    return {
        "experiment_key": KEY,
        "variant_key": variant,
        "session_id": session_id,
        "path": "/",
        "event_type": event_type,
        "event_id": None,
        "value": None,
        "metadata": None,
        "created_at": DAY + timedelta(days=days),
    } | extra


EVENTS = [
    # Exposed on day 0, converting on day 1.
    [_event("control", "a", "impression", 0)],
    [_event("control", "a", "conversion", 1, value=5.0)],
    # Converted before its impression: converting on the day it became exposed (day 1).
    [_event("control", "b", "conversion", 0), _event("control", "b", "cta_click", 0)],
    [_event("control", "b", "impression", 1)],
    # A second impression counts nothing more; a retried event is stored once.
    [_event("treat", "c", "impression", 0, event_id="i1"),
     _event("treat", "c", "impression", 2, event_id="i2")],
    [_event("treat", "c", "impression", 0, event_id="i1"),
     _event("treat", "c", "conversion", 2, event_id="c1")],
    # Never exposed: not in the daily totals.
    [_event("treat", "d", "cta_click", 1)],
]  # fmt: skip
EXPECTED = {
    ("control", date(2026, 11, 2)): (1, 0),
    ("control", date(2026, 11, 3)): (1, 2),
    ("treat", date(2026, 11, 2)): (1, 0),
    ("treat", date(2026, 11, 4)): (0, 1),
}


async def _daily(session: AsyncSession) -> dict:
    rows = await session.scalars(select(DailyTotals).where(DailyTotals.experiment_key == KEY))
    return {(r.variant_key, r.day): (r.exposed, r.converting) for r in rows}


async def test_each_session_counts_on_the_day_it_became_exposed_and_converting(sessionmaker):
    for batch in EVENTS:
        async with sessionmaker() as session:
            await tallies.record(session, batch)
            await session.commit()
    async with sessionmaker() as session:
        assert await _daily(session) == EXPECTED
        series = await timeline.over_time(
            session, KEY, ["control", "treat"], until=date(2026, 11, 5)
        )
    assert series["days"] == [date(2026, 11, 2) + timedelta(days=i) for i in range(3)]
    assert series["exposed"] == {"control": [1, 2, 2], "treat": [1, 1, 1]}
    assert series["conversion_rate"] == {"control": [0.0, 1.0, 1.0], "treat": [0.0, 0.0, 1.0]}
    # No lift while control converts nothing; then (treat − control) / control.
    assert series["lift"] == {"treat": [None, -1.0, 0.0]}


async def test_the_series_window_adds_older_days_into_its_first(sessionmaker):
    async with sessionmaker() as session:
        await tallies.record(session, [e for batch in EVENTS[:2] for e in batch])
        await session.commit()
        later = date(2026, 11, 3) + timedelta(days=timeline.MAX_DAYS - 1)
        series = await timeline.over_time(session, KEY, ["control", "treat"], until=later)
    assert series["days"] == [date(2026, 11, 3)]  # day 0 fell out of the window...
    assert series["exposed"]["control"] == [1]  # ...but its session still counts
    assert series["conversion_rate"]["control"] == [1.0]


@pytest.fixture(params=BACKENDS)
async def engine_at_0011(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    url = await fresh_database(request.param, tmp_path)
    engine = create_engine(url)
    await migrations.upgrade(engine, "0011")
    yield engine
    await engine.dispose()
    await drop_database(url)


async def test_migration_fills_the_daily_totals_from_stored_events(engine_at_0011: AsyncEngine):
    stored = {}
    for batch in EVENTS:
        for event in batch:
            stored.setdefault((event["event_id"] or id(event)), event)
    async with engine_at_0011.begin() as conn:
        await insert_rows(conn, ExperimentEvent.__table__, list(stored.values()))
    await migrations.upgrade(engine_at_0011)
    async with async_sessionmaker(engine_at_0011)() as session:
        assert await _daily(session) == EXPECTED
