"""Revision 0020 gives CUPED metrics their pre-exposure window: existing CUPED metrics get
14 days, exposed sessions their covariate over it from the stored events, the sessions not
exposed yet their waiting events, and the covariate terms are rebuilt; the downgrade puts
back the terms of everything sent before exposure."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from promptlooper import migrations
from promptlooper.online import tallies
from promptlooper.online.models import ExperimentEvent, MetricDefinition
from tests.conftest import BACKENDS, engine_at, old_table, raw_event

START = datetime(2026, 11, 1, tzinfo=UTC)
KEY = "agents_test"


@pytest.fixture(params=BACKENDS)
async def engine_at_0019(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    async for engine in engine_at(request.param, tmp_path, "0019"):
        yield engine


TALLIES = old_table(
    "online_session_tallies",
    "experiment_key", "variant_key", "session_id", "events", "impressions", "conversions",
    "value", "exposed_at",
)  # fmt: skip
UNIT_EVENTS = old_table(
    "online_unit_events",
    "experiment_key", "variant_key", "session_id", "event_type", "count", "value",
    "pre_count", "pre_value",
)  # fmt: skip
TERMS = old_table("online_metric_totals", "experiment_key", "variant_key", "term", "value")


def _event(session_id: str, kind: str, day: float, value: float | None = None) -> dict:
    return raw_event(KEY, session_id, kind, START + timedelta(days=day), value)


async def _terms(engine: AsyncEngine) -> dict[str, float]:
    """The terms that are not zero."""
    async with engine.connect() as conn:
        found = await conn.execute(sa.text("SELECT term, value FROM online_metric_totals"))
        return {term: value for term, value in found.all() if value}


async def test_revision_0020_windows_the_covariates_of_stored_cuped_metrics(
    engine_at_0019: AsyncEngine,
):
    engine = engine_at_0019
    # s1: exposed on day 20, bought 1 on day 3 (outside 14 days) and 2 on day 10 (inside),
    # then 5 on day 21; s2: bought 2 and 4 on day 1, not exposed yet.
    events = [
        _event("s1", "purchase", 3, 1.0), _event("s1", "purchase", 10, 2.0),
        _event("s1", "impression", 20), _event("s1", "purchase", 21, 5.0),
        _event("s2", "purchase", 1, 2.0), _event("s2", "purchase", 1, 4.0),
    ]  # fmt: skip
    tally = {"experiment_key": KEY, "variant_key": "a", "conversions": 0, "value": 0.0}
    unit = {"experiment_key": KEY, "variant_key": "a", "event_type": "purchase"}
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(MetricDefinition.__table__),
            [{"id": uuid.uuid4(), "name": "revenue", "kind": "event", "source": "purchase",
              "aggregation": "mean", "direction": "higher", "cuped": True},
             {"id": uuid.uuid4(), "name": "spend", "kind": "event", "source": "purchase",
              "aggregation": "mean", "direction": "higher", "cuped": False}],
        )  # fmt: skip
        await conn.execute(sa.insert(ExperimentEvent.__table__), events)
        await conn.execute(sa.insert(TALLIES), [
            tally | {"session_id": "s1", "events": 4, "impressions": 1,
                     "exposed_at": START + timedelta(days=20)},
            tally | {"session_id": "s2", "events": 2, "impressions": 0, "exposed_at": None},
        ])  # fmt: skip
        await conn.execute(sa.insert(UNIT_EVENTS), [
            unit | {"session_id": "s1", "count": 3, "value": 8.0, "pre_count": 2,
                    "pre_value": 3.0},
            unit | {"session_id": "s2", "count": 2, "value": 6.0, "pre_count": 2,
                    "pre_value": 6.0},
        ])  # fmt: skip
        await conn.execute(sa.insert(TERMS), [
            {"experiment_key": KEY, "variant_key": "a", "term": t, "value": x}
            for t, x in {"purchase:v": 5.0, "purchase:p": 3.0, "purchase:pp": 9.0,
                         "purchase:vp": 15.0}.items()
        ])  # fmt: skip

    await migrations.upgrade(engine, "0020")

    async with engine.connect() as conn:
        windows = dict((await conn.execute(sa.text(
            "SELECT name, cuped_window_days FROM online_metrics"
        ))).all())  # fmt: skip
        covariates = (await conn.execute(sa.text(
            "SELECT session_id, event_type, window_days, value FROM online_unit_covariates"
        ))).all()  # fmt: skip
        waiting = (await conn.execute(sa.text(
            "SELECT session_id, event_type, value FROM online_pending_events"
        ))).all()  # fmt: skip
    assert windows == {"revenue": 14, "spend": None}
    assert [tuple(r) for r in covariates] == [("s1", "purchase", 14, 2.0)]
    assert [tuple(r) for r in waiting] == [("s2", "purchase", 6.0)]
    assert await _terms(engine) == {"purchase:v": 5.0, "purchase:p14": 2.0,
                                    "purchase:pp14": 4.0, "purchase:vp14": 10.0}  # fmt: skip

    # s2's impression on day 5 judges its waiting purchases against it: inside 14 days
    # (written by today's ingestion, into today's schema).
    await migrations.upgrade(engine)
    async with AsyncSession(engine) as session:
        impression = _event("s2", "impression", 5)
        await tallies.record(session, [impression], frozenset({"purchase"}),
                             {"purchase": frozenset({14})})  # fmt: skip
        await session.commit()
    assert await _terms(engine) == {"purchase:v": 5.0, "purchase:p14": 8.0,
                                    "purchase:pp14": 40.0, "purchase:vp14": 10.0}  # fmt: skip

    await migrations.downgrade(engine, "0019")

    # Everything before exposure is the covariate again: s1's 3, s2's 6.
    assert await _terms(engine) == {"purchase:v": 5.0, "purchase:p": 9.0,
                                    "purchase:pp": 45.0, "purchase:vp": 15.0}  # fmt: skip
