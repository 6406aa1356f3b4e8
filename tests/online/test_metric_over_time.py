"""The series over time carry a defined primary metric: each arm's mean as it stood at the
end of each UTC day, from the picture of its terms the server's upkeep keeps each day (today's
from the running totals), and each treatment's lift as the results table computes it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from promptlooper.online import tallies, timeline, upkeep
from promptlooper.online.models import MetricDays, MetricDefinition, MetricTotals, OnlineExperiment

KEY, ARMS = "homepage_hero_test", ["control", "tiny_gang_social_proof"]


def _rows(at: datetime, variant: str, purchases: dict[str, float], exposed: set[str]) -> list:
    found = []
    for session_id, value in purchases.items():
        base = {"experiment_key": KEY, "variant_key": variant, "session_id": session_id}
        common = {"path": "/", "event_id": None, "metadata": None, "created_at": at}
        if session_id in exposed:
            found.append(base | common | {"event_type": "impression", "value": None})
        found.append(base | common | {"event_type": "purchase", "value": value})
    return found


async def _write(sessionmaker, rows: list) -> None:
    async with sessionmaker() as session:
        await tallies.record(session, rows, frozenset({"purchase"}))
        await session.commit()


async def test_a_defined_primary_mean_is_drawn_as_it_stood_at_each_days_end(sessionmaker, registry):
    now = datetime.now(UTC)
    today, yesterday = now.date(), now.date() - timedelta(days=1)
    async with sessionmaker() as session:
        session.add(MetricDefinition(name="spend", source="purchase", aggregation="mean"))
        await session.execute(
            update(OnlineExperiment)
            .where(OnlineExperiment.experiment_key == KEY)
            .values(primary_metric="spend")
        )
        await session.commit()
    # Yesterday: two sessions per arm exposed, each buying once.
    earlier = now - timedelta(days=1)
    await _write(
        sessionmaker,
        _rows(earlier, "control", {"c0": 10.0, "c1": 20.0}, {"c0", "c1"})
        + _rows(earlier, ARMS[1], {"t0": 12.0, "t1": 30.0}, {"t0", "t1"}),
    )
    # The upkeep's last run yesterday kept the day's picture; a later run today does not
    # change it, and nothing the upkeep has not seen yet is missing from today's point.
    await upkeep.run_once(sessionmaker, now=earlier)
    await upkeep.run_once(sessionmaker)
    # Today: one more session per arm, and c0 buys again (its total 15: its square moves too).
    await _write(
        sessionmaker,
        _rows(now, "control", {"c2": 30.0}, {"c2"})
        + _rows(now, "control", {"c0": 5.0}, set())
        + _rows(now, ARMS[1], {"t2": 15.0}, {"t2"}),
    )

    async with sessionmaker() as session:
        series = await timeline.over_time(session, KEY, ARMS)

    assert series["days"] == [yesterday, today]
    metric = series["metric"]
    assert (metric["name"], metric["direction"]) == ("spend", "higher")
    assert metric["units"] == {"control": [2, 3], ARMS[1]: [2, 3]}
    assert metric["mean"]["control"] == [pytest.approx(15.0), pytest.approx(65 / 3)]
    assert metric["mean"][ARMS[1]] == [pytest.approx(21.0), pytest.approx(19.0)]
    assert metric["lift"] == {
        ARMS[1]: [pytest.approx(21 / 15 - 1), pytest.approx(19 / (65 / 3) - 1)]
    }
    # The conversion series stay as they were: nobody converted.
    assert series["lift"] == {ARMS[1]: [None, None]}
    # Ingestion wrote no picture: the two are the upkeep's, today's taken before today's writes.
    async with sessionmaker() as session:
        kept = await session.execute(
            select(MetricDays.day, MetricDays.term, MetricDays.value).where(
                MetricDays.variant_key == "control", MetricDays.term == "purchase:v"
            )
        )
        assert sorted(kept.all()) == [(yesterday, "purchase:v", 30.0), (today, "purchase:v", 30.0)]
        live = await session.scalar(
            select(MetricTotals.value).where(
                MetricTotals.variant_key == "control", MetricTotals.term == "purchase:v"
            )
        )
    assert live == 65.0


async def test_without_a_defined_primary_metric_there_is_no_metric_series(sessionmaker, registry):
    await _write(sessionmaker, _rows(datetime.now(UTC), "control", {"c0": 10.0}, {"c0"}))
    async with sessionmaker() as session:
        series = await timeline.over_time(session, KEY, ARMS)
    assert len(series["days"]) == 1
    assert series["metric"] is None
