"""The running totals equal what grouping the stored events gives, however the events arrive:
in many small writes, with retried event ids, from concurrent writers, or stored before the
totals existed (the migration fills them)."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper import migrations
from promptlooper.db.engine import create_sessionmaker
from promptlooper.online.models import (
    ExperimentEvent,
    ExperimentTotals,
    SessionTally,
    VariantTotals,
)
from promptlooper.online.tallies import EVENT_COUNTS, TOTALS
from tests.conftest import BACKENDS, engine_at
from tests.online.conftest import store

KINDS = list(EVENT_COUNTS)


def random_events(seed: int, count: int, key: str = "homepage_hero_test") -> list[dict]:
    """Sessions that mostly stay in one variant, some seen in two; a share of events carry
    an id, and some of those are sent twice (a retry)."""
    rng = random.Random(seed)
    variants = ["control", "tiny_gang_social_proof"]
    events = []
    for i in range(count):
        session = f"s{rng.randrange(60)}"
        variant = variants[hash(session) % 2] if rng.random() < 0.9 else rng.choice(variants)
        kind = rng.choice(KINDS)
        event = {
            "experiment_key": key,
            "variant_key": variant,
            "session_id": session,
            "event_type": kind,
            "event_id": f"e{i}" if rng.random() < 0.5 else None,
            # Any event may carry a value; only a conversion's is conversion value.
            "value": round(rng.uniform(1, 50), 2) if rng.random() < 0.5 else None,
        }
        events.append(event)
        if event["event_id"] and rng.random() < 0.2:
            events.append(dict(event))
    rng.shuffle(events)
    return events


def expected_totals(stored: list[ExperimentEvent]) -> tuple[dict, dict]:
    """The totals computed from scratch from the stored events."""
    sessions: dict[tuple, dict] = defaultdict(lambda: {"imp": 0, "conv": 0, "value": 0.0})
    totals: dict[tuple, dict] = defaultdict(lambda: dict.fromkeys(TOTALS, 0.0))
    for e in stored:
        s = sessions[(e.experiment_key, e.variant_key, e.session_id)]
        s["imp"] += e.event_type == "impression"
        s["conv"] += e.event_type == "conversion"
        value = (e.value or 0.0) if e.event_type == "conversion" else 0.0
        s["value"] += value
        t = totals[(e.experiment_key, e.variant_key)]
        t[EVENT_COUNTS[e.event_type]] += 1
        t["value_total"] += value
    arms: dict[tuple, int] = defaultdict(int)
    for (key, variant, session_id), s in sessions.items():
        t = totals[(key, variant)]
        arms[(key, session_id)] += 1
        t["unique_sessions"] += 1
        if s["imp"]:
            t["exposed"] += 1
            t["converting"] += s["conv"] > 0
            t["value_exposed"] += s["value"]
            t["value_squares"] += s["value"] ** 2
    experiments: dict[str, dict] = defaultdict(lambda: {"sessions": 0, "multiple": 0})
    for (key, _session), n in arms.items():
        experiments[key]["sessions"] += 1
        experiments[key]["multiple"] += n > 1
    return dict(totals), dict(experiments)


async def kept_totals(session: AsyncSession) -> tuple[dict, dict]:
    variants = {
        (row.experiment_key, row.variant_key): {name: getattr(row, name) for name in TOTALS}
        for row in await session.scalars(select(VariantTotals))
    }
    experiments = {
        row.experiment_key: {"sessions": row.sessions, "multiple": row.multiple}
        for row in await session.scalars(select(ExperimentTotals))
    }
    return variants, experiments


async def assert_totals_match_events(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    async with sessionmaker() as session:
        stored = list(await session.scalars(select(ExperimentEvent)))
        variants, experiments = await kept_totals(session)
    expected_variants, expected_experiments = expected_totals(stored)
    assert variants.keys() == expected_variants.keys()
    for key, expected in expected_variants.items():
        assert variants[key] == pytest.approx(expected), key
    assert experiments == expected_experiments


async def test_totals_built_over_many_writes_equal_the_events(sessionmaker, registry):
    events = random_events(seed=7, count=400)
    for start in range(0, len(events), 37):
        await store(sessionmaker, events[start : start + 37])

    await assert_totals_match_events(sessionmaker)
    async with sessionmaker() as session:
        stored = list(await session.scalars(select(ExperimentEvent.event_id)))
    ids = [i for i in stored if i is not None]
    assert len(ids) == len(set(ids))  # every retry was stored once


async def test_a_retried_batch_adds_nothing(sessionmaker, registry):
    events = [e | {"event_id": f"id-{i}"} for i, e in enumerate(random_events(3, 50))]
    events = list({e["event_id"]: e for e in events}.values())
    await store(sessionmaker, events)
    async with sessionmaker() as session:
        before = await kept_totals(session)

    await store(sessionmaker, events)

    async with sessionmaker() as session:
        assert await kept_totals(session) == before


async def test_concurrent_writers_lose_no_transition(sessionmaker, registry):
    events = random_events(seed=11, count=600)
    chunks = [events[i::6] for i in range(6)]

    await asyncio.gather(*(store(sessionmaker, chunk) for chunk in chunks))

    await assert_totals_match_events(sessionmaker)


@pytest.fixture(params=BACKENDS)
async def engine_at_0006(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    async for engine in engine_at(request.param, tmp_path, "0006"):
        yield engine


async def test_the_migration_fills_the_totals_from_stored_events(engine_at_0006: AsyncEngine):
    now = datetime.now(UTC)
    rows = [
        {"path": "/", "metadata": None, "created_at": now} | e
        for e in random_events(seed=5, count=300)
        if e["event_id"] is None  # the old table stores each id once
    ]
    async with engine_at_0006.begin() as conn:
        await conn.execute(insert(ExperimentEvent.__table__), rows)

    await migrations.upgrade(engine_at_0006)

    await assert_totals_match_events(create_sessionmaker(engine_at_0006))


@pytest.fixture(params=BACKENDS)
async def engine_at_0018(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    async for engine in engine_at(request.param, tmp_path, "0018"):
        yield engine


_INFLATE = (
    # What the first version of 0007 left: every event's value in the value totals.
    "UPDATE online_session_tallies SET value = COALESCE((SELECT SUM(e.value) FROM online_events e"
    " WHERE e.experiment_key = online_session_tallies.experiment_key"
    " AND e.variant_key = online_session_tallies.variant_key"
    " AND e.session_id = online_session_tallies.session_id), 0)",
    "UPDATE online_variant_totals SET value_total = (SELECT COALESCE(SUM(e.value), 0)"
    " FROM online_events e WHERE e.experiment_key = online_variant_totals.experiment_key"
    " AND e.variant_key = online_variant_totals.variant_key),"
    " value_exposed = (SELECT COALESCE(SUM(s.value), 0) FROM online_session_tallies s"
    " WHERE s.experiment_key = online_variant_totals.experiment_key"
    " AND s.variant_key = online_variant_totals.variant_key AND s.impressions > 0),"
    " value_squares = (SELECT COALESCE(SUM(s.value * s.value), 0) FROM online_session_tallies s"
    " WHERE s.experiment_key = online_variant_totals.experiment_key"
    " AND s.variant_key = online_variant_totals.variant_key AND s.impressions > 0)",
)


async def _session_values(sessionmaker: async_sessionmaker[AsyncSession]) -> tuple[dict, dict]:
    """Each session's kept value, and the conversion value its stored events add up to."""
    async with sessionmaker() as session:
        kept = {
            (t.experiment_key, t.variant_key, t.session_id): t.value
            for t in await session.scalars(select(SessionTally))
        }
        stored = list(await session.scalars(select(ExperimentEvent)))
    expected = dict.fromkeys(kept, 0.0)
    for e in stored:
        if e.event_type == "conversion" and e.value:
            expected[(e.experiment_key, e.variant_key, e.session_id)] += e.value
    return kept, expected


async def test_migration_0019_repairs_value_totals_the_first_0007_inflated(
    engine_at_0018: AsyncEngine,
):
    sessionmaker = create_sessionmaker(engine_at_0018)
    await store(sessionmaker, random_events(seed=13, count=400))
    await store(sessionmaker, random_events(seed=14, count=200, key="pricing_cta_test"))
    async with engine_at_0018.begin() as conn:
        for statement in _INFLATE:
            await conn.execute(text(statement))
    kept, expected = await _session_values(sessionmaker)
    assert sum(kept.values()) > sum(expected.values()) + 100  # other events' values counted
    async with sessionmaker() as session:
        before, _ = await kept_totals(session)
    assert before[("homepage_hero_test", "control")]["value_total"] > 0

    await migrations.upgrade(engine_at_0018)

    await assert_totals_match_events(sessionmaker)
    kept, expected = await _session_values(sessionmaker)
    assert kept == pytest.approx(expected)
    async with sessionmaker() as session:
        after, _ = await kept_totals(session)
    # Only the value totals moved.
    for key, totals in after.items():
        moved = {n for n in TOTALS if totals[n] != pytest.approx(before[key][n])}
        assert moved <= {"value_total", "value_exposed", "value_squares"}, key
        assert totals["value_total"] < before[key]["value_total"], key

    # Run again (a database that was right already): the same numbers.
    await migrations.downgrade(engine_at_0018, "0018")
    await migrations.upgrade(engine_at_0018)
    async with sessionmaker() as session:
        again, _ = await kept_totals(session)
    assert again.keys() == after.keys()
    for key, totals in after.items():
        assert again[key] == pytest.approx(totals), key
    await assert_totals_match_events(sessionmaker)
