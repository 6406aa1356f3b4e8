"""Revision 0018 moves the stored totals to metrics counted from exposure on: each session's
first impression time, its rows' pre-exposure events and the event terms come from the stored
events, and performance fields move to one row per unit, their terms untouched; the
downgrade puts them back."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper import migrations
from promptlooper.online import tallies
from promptlooper.online.models import ExperimentEvent
from tests.conftest import BACKENDS, engine_at, old_table, raw_event

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
KEY = "agents_test"


@pytest.fixture(params=BACKENDS)
async def engine_at_0017(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    async for engine in engine_at(request.param, tmp_path, "0017"):
        yield engine


TALLIES = old_table(
    "online_session_tallies",
    "experiment_key", "variant_key", "session_id", "events", "impressions", "conversions", "value",
)  # fmt: skip
UNIT_EVENTS = old_table(
    "online_unit_events",
    "experiment_key", "variant_key", "session_id", "event_type", "count", "value", "pre_value",
)  # fmt: skip
TERMS = old_table("online_metric_totals", "experiment_key", "variant_key", "term", "value")


def _event(session_id: str, kind: str, minute: int, value: float | None = None) -> dict:
    return raw_event(KEY, session_id, kind, START + timedelta(minutes=minute), value)


async def test_revision_0018_counts_stored_metrics_from_exposure_and_moves_performance_rows(
    engine_at_0017: AsyncEngine,
):
    # s1: bought 4 before its impression, 6 and an unvalued purchase after (all tracked);
    # s2: bought 3 before the metric was defined (untracked), then was exposed and bought 10;
    # s3: bought 2, never exposed. u1 served two calls with a cost and a quality.
    events = [
        _event("s1", "purchase", 0, 4.0), _event("s1", "impression", 2),
        _event("s1", "purchase", 3, 6.0), _event("s1", "purchase", 5),
        _event("s2", "purchase", 0, 3.0), _event("s2", "impression", 1),
        _event("s2", "purchase", 2, 10.0), _event("s3", "purchase", 1, 2.0),
    ]  # fmt: skip
    tally = {"experiment_key": KEY, "variant_key": "a", "conversions": 0, "value": 0.0}
    units = [
        ("s1", "purchase", 3, 11.0, 4.0), ("s2", "purchase", 1, 10.0, 0.0),
        ("s3", "purchase", 1, 2.0, 0.0), ("u1", "perf:calls", 2, 2.0, 0.0),
        ("u1", "perf:cost", 2, 0.5, 0.0), ("u1", "perf:quality", 1, 0.8, 0.0),
    ]  # fmt: skip
    performance = {
        f"perf:{f}:{m}": x
        for f, n, v in (("calls", 2, 2.0), ("cost", 2, 0.5), ("quality", 1, 0.8))
        for m, x in zip(tallies.MOMENTS, tallies.moments(n, v, v > 0), strict=True)
    }
    async with engine_at_0017.begin() as conn:
        await conn.execute(sa.insert(ExperimentEvent.__table__), events)
        await conn.execute(sa.insert(TALLIES), [
            tally | {"session_id": "s1", "events": 4, "impressions": 1},
            tally | {"session_id": "s2", "events": 3, "impressions": 1},
            tally | {"session_id": "s3", "events": 1, "impressions": 0},
        ])  # fmt: skip
        await conn.execute(sa.insert(UNIT_EVENTS), [
            {"experiment_key": KEY, "variant_key": "a", "session_id": s, "event_type": e,
             "count": c, "value": v, "pre_value": p} for s, e, c, v, p in units
        ])  # fmt: skip
        await conn.execute(sa.insert(TERMS), [
            {"experiment_key": KEY, "variant_key": "a", "term": t, "value": x}
            for t, x in (performance | {"purchase:v": 21.0, "purchase:p": 4.0}).items()
        ])  # fmt: skip

    await migrations.upgrade(engine_at_0017, "0018")

    async with engine_at_0017.connect() as conn:
        terms = dict((await conn.execute(sa.text(
            "SELECT term, value FROM online_metric_totals WHERE variant_key = 'a'"
        ))).all())  # fmt: skip
        rows = (await conn.execute(sa.text(
            "SELECT session_id, count, value, pre_count, pre_value FROM online_unit_events"
            " ORDER BY session_id"
        ))).all()  # fmt: skip
        calls = (await conn.execute(sa.text(
            "SELECT unit_id, calls, cost_calls, cost, quality_calls, quality, success_calls"
            " FROM online_unit_calls"
        ))).all()  # fmt: skip
    assert [tuple(r) for r in rows] == [
        ("s1", 3, 11.0, 1, 4.0),
        ("s2", 1, 10.0, 0, 0.0),  # what the row missed came first
        ("s3", 1, 2.0, 1, 2.0),  # not exposed: all before
    ]
    assert [tuple(r) for r in calls] == [("u1", 2, 2, 0.5, 1, 0.8, 0)]
    expected = {"purchase:units": 2.0, "purchase:n": 3.0, "purchase:v": 17.0,
                "purchase:vv": 49.0 + 100.0, "purchase:nv": 2 * 7.0 + 10.0,
                "purchase:p": 4.0, "purchase:pp": 16.0, "purchase:vp": 7.0 * 4.0}  # fmt: skip
    assert terms == pytest.approx(performance | {"purchase:nn": 4.0 + 1.0} | expected)

    await migrations.downgrade(engine_at_0017, "0017")

    async with engine_at_0017.connect() as conn:
        restored = (await conn.execute(sa.text(
            "SELECT event_type, count, value FROM online_unit_events WHERE session_id = 'u1'"
            " ORDER BY event_type"
        ))).all()  # fmt: skip
    assert [tuple(r) for r in restored] == [
        ("perf:calls", 2, 2.0),
        ("perf:cost", 2, 0.5),
        ("perf:quality", 1, 0.8),
    ]
