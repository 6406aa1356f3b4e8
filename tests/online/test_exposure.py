"""Defined metrics count what a session did from its first impression on; what it did before
is only CUPED's covariate. Judged from the events' timestamps as they are stored, exactly once
under retries and concurrent writers, whatever order the events arrive in."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.online import tallies
from promptlooper.online.models import MetricTotals

START = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
TRACKED = frozenset({"purchase", "signup"})
WINDOWS = {"purchase": frozenset({1, 14})}
"""Two CUPED metrics measure purchases: over the day before exposure, and over 14 days."""
DAY = 24 * 60


def stored(
    session_id: str,
    kind: str,
    minute: float,
    value: float | None = None,
    event_id: str | None = None,
    variant: str = "control",
) -> dict:
    return {
        "experiment_key": "homepage_hero_test",
        "variant_key": variant,
        "session_id": session_id,
        "event_type": kind,
        "value": value,
        "path": "/",
        "event_id": event_id,
        "metadata": None,
        "created_at": START + timedelta(minutes=minute),
    }


async def write(sessionmaker: async_sessionmaker[AsyncSession], events: list[dict]) -> None:
    async with sessionmaker() as session:
        await tallies.record(session, events, TRACKED, WINDOWS)
        await session.commit()


async def kept_terms(sessionmaker: async_sessionmaker[AsyncSession]) -> dict[tuple, float]:
    async with sessionmaker() as session:
        rows = await session.execute(
            select(MetricTotals.variant_key, MetricTotals.term, MetricTotals.value)
        )
        return {(variant, term): value for variant, term, value in rows.all()}


async def test_a_pre_exposure_event_arriving_after_the_impression_is_only_covariate(
    sessionmaker, registry
):
    # a: exposed at minute 5, buys 10 at minute 6; then its purchase of 7 and its signup from
    # minutes 2 and 3 arrive late, the purchase twice (a retry).
    await write(sessionmaker, [stored("a", "impression", 5), stored("a", "purchase", 6, 10.0)])
    late = [stored("a", "purchase", 2, 7.0, event_id="p2"), stored("a", "signup", 3)]
    await write(sessionmaker, late)
    await write(sessionmaker, late[:1])

    terms = await kept_terms(sessionmaker)
    assert terms[("control", "purchase:v")] == 10.0
    assert terms[("control", "purchase:n")] == 1.0
    assert terms[("control", "purchase:p14")] == 7.0
    assert terms[("control", "purchase:vp14")] == 70.0
    assert terms[("control", "signup:units")] == 0.0  # signed up only before exposure
    assert terms[("control", "signup:n")] == 0.0
    assert ("control", "signup:p14") not in terms  # no CUPED metric measures signups

    # A later purchase adds to the metric; an impression arriving late with an earlier
    # timestamp moves the exposure of what is stored from then on, not of what was judged.
    await write(sessionmaker, [stored("a", "purchase", 7, 5.0), stored("a", "impression", 1)])
    await write(sessionmaker, [stored("a", "purchase", 1.5, 2.0)])

    terms = await kept_terms(sessionmaker)
    assert terms[("control", "purchase:v")] == 17.0
    assert terms[("control", "purchase:vv")] == 17.0**2
    assert terms[("control", "purchase:n")] == 3.0
    assert terms[("control", "purchase:p14")] == 7.0
    assert terms[("control", "purchase:units")] == 1.0


def sessions_events(seed: int) -> tuple[list[dict], list[dict], dict]:
    """Sessions with one impression each at a random moment and purchases and signups in the
    days around it (so some of those before it are outside the one-day CUPED window), half
    with ids (some sent twice). Returned in two waves for concurrent writers: the
    impressions with some of the earlier events, then the later events with the rest of the
    earlier ones (arriving after the impression they precede); and the expected terms."""
    rng = random.Random(seed)
    first: list[dict] = []
    second: list[dict] = []
    expected: defaultdict[tuple[str, str], float] = defaultdict(float)
    units: dict[tuple[str, str, str], list[float]] = {}
    for index in range(40):
        variant = rng.choice(["control", "tiny_gang_social_proof"])
        session_id = f"s{index}"
        exposed = rng.uniform(1, 3) * DAY
        first.append(stored(session_id, "impression", exposed, variant=variant))
        for number in range(rng.randrange(6)):
            kind = rng.choice(sorted(TRACKED))
            minute = rng.uniform(0, 4) * DAY
            value = round(rng.uniform(1, 40), 2) if kind == "purchase" else None
            event_id = f"{session_id}-{number}" if rng.random() < 0.5 else None
            event = stored(session_id, kind, minute, value, event_id, variant)
            wave = second if minute >= exposed or rng.random() < 0.5 else first
            wave.append(event)
            if event_id and rng.random() < 0.3:  # a retry, never before the impression's write
                (second if minute >= exposed else rng.choice([first, second])).append(dict(event))
            unit = units.setdefault((variant, session_id, kind), [0, 0.0, {}])
            amount = 1.0 if value is None else value
            if minute >= exposed:
                unit[0] += 1
                unit[1] += amount
            for days in WINDOWS.get(kind, ()):
                inside = exposed - days * DAY <= minute < exposed
                unit[2][days] = unit[2].get(days, 0.0) + amount * inside
    for (variant, _, kind), (count, value, covariates) in units.items():
        for term, amount in tallies.terms(kind, count, value, covariates).items():
            expected[(variant, term)] += amount
    rng.shuffle(first)
    rng.shuffle(second)
    return first, second, expected


@pytest.mark.parametrize("seed", [3, 17])
async def test_concurrent_writers_with_retries_count_each_event_on_its_side_of_exposure(
    sessionmaker, registry, seed
):
    first, second, expected = sessions_events(seed)

    for wave in (first, second):
        await asyncio.gather(*(write(sessionmaker, wave[i::4]) for i in range(4)))

    terms = await kept_terms(sessionmaker)
    assert terms.keys() == expected.keys()
    for key, value in expected.items():
        assert terms[key] == pytest.approx(value, abs=1e-9), key
