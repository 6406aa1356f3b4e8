"""Storing events together with the running totals the results are read from.

Results must answer in well under a second with millions of events stored, so nothing reads
the events back: each write folds the events it actually stored (a retried ``event_id`` is
skipped by the insert and so never counted) into

- one tally per session and variant (events, impressions, conversions, conversion value: the
  built-in value per session counts conversions only, whatever other events carry),
- one row per session and experiment counting the variants it was seen in,
- one totals row per variant and one per experiment,
- one row per variant and UTC day counting the sessions first exposed or converting that day
  (the results' series over time),
- for the event names defined metrics measure, one row per session, variant and name (how
  many, their value, and the value it had before the session's first impression) and per
  variant the sums over exposed sessions of each such session's count, value, their squares
  and product, and of its pre-exposure value, its square and its product with the value
  (``terms``): a proportion, mean, ratio or CUPED metric's sufficient statistics.

A session's contribution to the totals depends on its whole history (it is *exposed* from its
first impression on; the value statistics use the square of its total value), so the tally
upserts return each session's tally after the write; the tally before it is that minus what
this write added. The upserts lock the rows they touch, so concurrent writers (several server
processes) see each other's committed tallies and every transition is counted exactly once.
Every table's rows are written in key order, and the tables always in the same order, so two
writers never wait on each other in a cycle (a deadlock).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Row, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.upsert import insert_ignore, insert_or_add, insert_rows
from promptlooper.online.models import (
    DailyTotals,
    ExperimentEvent,
    ExperimentTotals,
    MetricTotals,
    SessionArms,
    SessionTally,
    UnitEvents,
    VariantTotals,
)
from promptlooper.online.schemas import PERFORMANCE_FIELDS

EVENT_COUNTS = {
    "impression": "impressions",
    "cta_click": "cta_clicks",
    "form_start": "form_starts",
    "form_submit": "form_submits",
    "conversion": "conversions",
}
"""Event type → the variant-totals column counting it."""
TOTALS = tuple(c.name for c in VariantTotals.__table__.columns if not c.primary_key)

_EVENT_KEY = ("experiment_key", "event_id")
_SESSION_KEY = ("experiment_key", "variant_key", "session_id")
_UNIT_KEY = (*_SESSION_KEY, "event_type")
_SESSION_ROW = (*_SESSION_KEY, "events", "impressions", "conversions", "value")


def _zero_totals() -> dict[str, float]:
    return dict.fromkeys(TOTALS, 0)


async def record(
    session: AsyncSession, events: list[dict[str, Any]], tracked: frozenset[str] = frozenset()
) -> int:
    """Store ``events`` (rows of ``online_events``) and add the ones stored to the totals, in
    the caller's transaction; the events named in ``tracked`` (defined metrics' sources) are
    also kept per session for the metrics' totals. Returns how many were stored (retries
    excluded)."""
    events = await _store(session, _first_of_each_id(sorted(events, key=_event_order)))
    if not events:
        return 0
    # Per session and variant, what this write adds: events, impressions, conversions and their
    # value.
    counts: defaultdict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0])
    totals: defaultdict[tuple[str, str], dict[str, float]] = defaultdict(_zero_totals)
    # The day of each session's first impression and first conversion in this write.
    firsts: defaultdict[tuple[str, str, str], list[date | None]] = defaultdict(lambda: [None, None])
    # Per session, variant and tracked event name: the events' number and value.
    measured: defaultdict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    # Of those, the value sent before the session's first impression in this write.
    early: defaultdict[tuple[str, str, str, str], float] = defaultdict(float)
    impressed = _first_impressions(events) if tracked else {}
    for event in events:
        key, variant = event["experiment_key"], event["variant_key"]
        event_type = event["event_type"]
        session_key = (key, variant, event["session_id"])
        tally = counts[session_key]
        tally[0] += 1
        if event_type == "impression" or event_type == "conversion":
            _first_day(firsts[session_key], event_type == "conversion", event["created_at"])
        tally[1] += event_type == "impression"
        tally[2] += event_type == "conversion"
        variant_totals = totals[(key, variant)]
        if event_type in EVENT_COUNTS:
            variant_totals[EVENT_COUNTS[event_type]] += 1
        if event_type in tracked:
            unit = measured[(*session_key, event_type)]
            amount = 1.0 if event["value"] is None else event["value"]
            unit[0] += 1
            unit[1] += amount
            if (seen := impressed.get(session_key)) is not None and event["created_at"] < seen:
                early[(*session_key, event_type)] += amount
        if event_type == "conversion" and (value := event["value"]):
            tally[3] += value
            variant_totals["value_total"] += value

    after = await insert_or_add(
        session,
        SessionTally.__table__,  # type: ignore[arg-type]
        _SESSION_KEY,
        [
            {"experiment_key": k, "variant_key": v, "session_id": s}
            | {"events": n, "impressions": i, "conversions": c, "value": x}
            for (k, v, s), (n, i, c, x) in sorted(counts.items())
        ],
        returning=_SESSION_ROW,
    )
    arms: Counter[tuple[str, str]] = Counter()
    daily: defaultdict[tuple[str, str, date], list[int]] = defaultdict(lambda: [0, 0])
    # Per session: exposed before this write, exposed now, and sent events before it.
    exposure: dict[tuple[str, str, str], tuple[bool, bool, bool]] = {}
    for key, variant, session_id, *new in after:
        session_key = (key, variant, session_id)
        added = counts[session_key]
        exposure[session_key] = (new[1] > added[1], new[1] > 0, new[0] > added[0])
        first, exposed, converting = _fold(totals[(key, variant)], added, new)
        if first:
            arms[(key, session_id)] += 1
        if exposed or converting:
            impressed, converted = firsts[session_key]
            if exposed:
                daily[(key, variant, impressed)][0] += 1  # type: ignore[index]
            if converting:
                # Converting from the later of its exposure and its conversion; one of them
                # (or both) happened in this write.
                day = max(d for d in (converted, impressed if exposed else None) if d)
                daily[(key, variant, day)][1] += 1
    terms = await _measure(session, measured, exposure, early) if tracked else {}
    await _add_arms(session, arms)
    await insert_or_add(
        session,
        VariantTotals.__table__,  # type: ignore[arg-type]
        ("experiment_key", "variant_key"),
        [{"experiment_key": k, "variant_key": v, **t} for (k, v), t in sorted(totals.items())],
    )
    if daily:
        await insert_or_add(
            session,
            DailyTotals.__table__,  # type: ignore[arg-type]
            ("experiment_key", "variant_key", "day"),
            [{"experiment_key": k, "variant_key": v, "day": d, "exposed": e, "converting": c}
             for (k, v, d), (e, c) in sorted(daily.items())],
        )  # fmt: skip
    await _add_terms(session, terms)
    return len(events)


PERFORMANCE = "perf:"
"""The prefix of a performance-log field's rows and terms (``perf:cost``): apart from event
names, which are slugs and cannot hold a colon."""


def terms(event_type: str, count: float, value: float, pre: float = 0.0) -> dict[str, float]:
    """One exposed session's share of its variant's totals for one event name: whether it sent
    the event (for a performance field: had a non-zero value), the number and value of its
    events, their squares and their product; for an event name also its value before its
    first exposure (``pre``, CUPED's covariate), its square and its product with the value."""
    performance = event_type.startswith(PERFORMANCE)
    present = value > 0 if performance else count > 0
    share = {
        f"{event_type}:units": float(present),
        f"{event_type}:n": count,
        f"{event_type}:v": value,
        f"{event_type}:nn": count * count,
        f"{event_type}:vv": value * value,
        f"{event_type}:nv": count * value,
    }
    if not performance:
        share |= {
            f"{event_type}:p": pre,
            f"{event_type}:pp": pre * pre,
            f"{event_type}:vp": value * pre,
        }
    return share


async def _measure(
    session: AsyncSession,
    measured: dict[tuple[str, str, str, str], list[float]],
    exposure: dict[tuple[str, str, str], tuple[bool, bool, bool]],
    early: dict[tuple[str, str, str, str], float],
) -> defaultdict[tuple[str, str, str], float]:
    """Add this write's tracked events to each session's running count and value, and return
    what that changes in the variants' metric terms. Only exposed sessions count, as for the
    built-in metrics: a session exposed before this write moves its share from the old values
    to the new; one exposed by this write brings its whole share, the event names it sent
    before included (read back only when it had earlier events).

    A session exposed by this write also gets its pre-exposure value per event name (CUPED's
    covariate): what it had sent before this write, and in this write before its first
    impression (``early``). It is kept on the session's rows for the writes to come."""
    after = await insert_or_add(
        session,
        UnitEvents.__table__,  # type: ignore[arg-type]
        _UNIT_KEY,
        [{"experiment_key": k, "variant_key": v, "session_id": s, "event_type": e,
          "count": c, "value": x} for (k, v, s, e), (c, x) in sorted(measured.items())],
        returning=(*_UNIT_KEY, "count", "value", "pre_value"),
    )  # fmt: skip
    changes: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    newly = {k for k, (was, now, earlier) in exposure.items() if now and not was and earlier}

    def add(key: str, variant: str, share: dict[str, float], sign: float = 1.0) -> None:
        for term, amount in share.items():
            changes[(key, variant, term)] += sign * amount

    exposed_now = []  # rows of the sessions this write exposed
    for key, variant, session_id, event_type, count, value, pre in after:
        session_key = (key, variant, session_id)
        was_exposed, is_exposed, had_events = exposure[session_key]
        if not is_exposed:
            continue
        if not was_exposed:
            if not had_events:  # otherwise all of its rows are read back below
                exposed_now.append((key, variant, session_id, event_type, count, value))
            continue
        count_added, value_added = measured[(*session_key, event_type)]
        add(key, variant, terms(event_type, count, value, pre))
        add(key, variant, terms(event_type, count - count_added, value - value_added, pre), -1.0)
    exposed_now += await _rows_of(session, newly)
    covariates = []
    for key, variant, session_id, event_type, count, value in exposed_now:
        row_key = (key, variant, session_id, event_type)
        pre = value - measured.get(row_key, (0, 0.0))[1] + early.get(row_key, 0.0)
        add(key, variant, terms(event_type, count, value, pre))
        if pre:
            covariates.append(dict(zip(_UNIT_KEY, row_key, strict=True)) | {"pre_value": pre})
    if covariates:
        covariates.sort(key=lambda row: tuple(row[k] for k in _UNIT_KEY))
        await session.execute(update(UnitEvents), covariates)
    return changes


async def _rows_of(session: AsyncSession, sessions: set[tuple[str, str, str]]) -> list[Row[Any]]:
    """Every tracked event row of the given sessions (the ones this write touched as they are
    after it: the upsert above holds their locks)."""
    if not sessions:
        return []
    keys = (UnitEvents.experiment_key, UnitEvents.variant_key, UnitEvents.session_id)
    found = await session.execute(
        select(*keys, UnitEvents.event_type, UnitEvents.count, UnitEvents.value).where(
            tuple_(*keys).in_(sorted(sessions))
        )
    )
    return list(found.all())


def _first_impressions(events: list[dict[str, Any]]) -> dict[tuple[str, str, str], datetime]:
    """The time of each session's first impression among ``events``."""
    found: dict[tuple[str, str, str], datetime] = {}
    for event in events:
        if event["event_type"] == "impression":
            key = (event["experiment_key"], event["variant_key"], event["session_id"])
            if key not in found or event["created_at"] < found[key]:
                found[key] = event["created_at"]
    return found


def _first_day(firsts: list[date | None], conversion: bool, moment: datetime) -> None:
    """Keep the earliest UTC day of a session's impressions (slot 0) or conversions (1)."""
    day = (moment.astimezone(UTC) if moment.tzinfo else moment).date()
    current = firsts[conversion]
    if current is None or day < current:
        firsts[conversion] = day


async def _store(session: AsyncSession, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Insert the events, skipping those whose id is stored already; returns those stored.

    Events are first inserted as they are, which costs PostgreSQL about 60 % of what
    ``ON CONFLICT DO NOTHING`` costs (4.0 against 6.8 µs a row, measured in batches of
    1,000) and needs nothing back. Only an event id already stored (a retry, or the same
    event from another writer) makes that fail; the savepoint then undoes it, and the events
    go in again with ``ON CONFLICT DO NOTHING``, which says which ids it stored."""
    table = ExperimentEvent.__table__
    if all(event["event_id"] is None for event in events):  # nothing to clash with
        await insert_rows(session, table, events)  # type: ignore[arg-type]
        return events
    try:
        async with session.begin_nested():
            await insert_rows(session, table, events)  # type: ignore[arg-type]
        return events
    except IntegrityError:
        inserted = await insert_ignore(session, table, events, returning=_EVENT_KEY)  # type: ignore[arg-type]
    stored = {tuple(row) for row in inserted}
    return [e for e in events if e["event_id"] is None or _event_key(e) in stored]


def _first_of_each_id(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events (in ``_event_order``) without the repeats of an event id within them, the
    first kept: the insert above must not meet the same id twice in one statement."""
    unique: list[dict[str, Any]] = []
    previous: tuple[str, str | None] | None = None
    for event in events:
        key = _event_key(event)
        if key[1] is None or key != previous:
            unique.append(event)
        previous = key
    return unique


def _event_key(event: dict[str, Any]) -> tuple[str, str | None]:
    return event["experiment_key"], event["event_id"]


def _event_order(event: dict[str, Any]) -> tuple[str, str]:
    """Events with ids are inserted in id order: two writers storing the same retried events
    then wait for each other in one direction only."""
    return event["experiment_key"], event["event_id"] or ""


def _fold(
    totals: dict[str, float], added: Sequence[Any], new: Sequence[Any]
) -> tuple[bool, int, int]:
    """Move one session's contribution to its variant's totals from what it was before this
    write (``new`` less ``added``) to ``new``, each its events, impressions, conversions and
    value. Returns whether the session is new to the variant, and whether it became exposed
    and converting (1) or not (0). Plain sequences, not objects: this runs for every session
    of every write."""
    events, impressions, conversions, value = new
    old_impressions, old_value = impressions - added[1], value - added[3]
    was_exposed, exposed = old_impressions > 0, impressions > 0
    was_converting = was_exposed and conversions - added[2] > 0
    first = events == added[0]
    became_exposed = exposed - was_exposed
    became_converting = (exposed and conversions > 0) - was_converting
    totals["unique_sessions"] += first
    totals["exposed"] += became_exposed
    totals["converting"] += became_converting
    totals["value_exposed"] += value * exposed - old_value * was_exposed
    totals["value_squares"] += value**2 * exposed - old_value**2 * was_exposed
    return first, became_exposed, became_converting


async def _add_terms(session: AsyncSession, terms: dict[tuple[str, str, str], float]) -> None:
    """Add changes in the arms' metric terms (what ``_measure`` returns) to their running
    totals."""
    await insert_or_add(
        session,
        MetricTotals.__table__,  # type: ignore[arg-type]
        ("experiment_key", "variant_key", "term"),
        [{"experiment_key": k, "variant_key": v, "term": t, "value": x}
         for (k, v, t), x in sorted(terms.items())],
    )  # fmt: skip


async def _add_arms(session: AsyncSession, arms: Counter[tuple[str, str]]) -> None:
    """Count each session's new variants; a session reaching its second variant is one more
    multiple exposure, its first one more session of the experiment."""
    if not arms:
        return
    after = await insert_or_add(
        session,
        SessionArms.__table__,  # type: ignore[arg-type]
        ("experiment_key", "session_id"),
        [{"experiment_key": k, "session_id": s, "arms": n} for (k, s), n in sorted(arms.items())],
        returning=("experiment_key", "session_id", "arms"),
    )
    totals: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for key, session_id, count in after:
        before = count - arms[(key, session_id)]
        totals[key]["sessions"] += before == 0
        totals[key]["multiple"] += (count > 1) - (before > 1)
    await insert_or_add(
        session,
        ExperimentTotals.__table__,  # type: ignore[arg-type]
        ("experiment_key",),
        [{"experiment_key": k, "sessions": c["sessions"], "multiple": c["multiple"]}
         for k, c in sorted(totals.items())],
    )  # fmt: skip


async def record_calls(session: AsyncSession, calls: Sequence[dict[str, Any]]) -> None:
    """Add served calls (``experiment_key``, ``arm_key``, ``unit_id`` and the performance
    fields) to their units' running totals and their arms' metric terms, in the caller's
    transaction. Every unit served counts as exposed: ``perf:calls`` counts its calls, and
    each field sums the values of the calls that gave one (a cost left out is unknown, not
    zero)."""
    measured: defaultdict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for call in calls:
        unit = (call["experiment_key"], call["arm_key"], call["unit_id"])
        for field in PERFORMANCE_FIELDS:
            value = 1.0 if field == "calls" else call.get(field)
            if value is not None:
                row = measured[(*unit, PERFORMANCE + field)]
                row[0] += 1
                row[1] += float(value)
    exposure = {(k, v, u): (True, True, False) for k, v, u, _ in measured}
    await _add_terms(session, await _measure(session, measured, exposure, {}))
