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
  many, their value, and how many and what value of them came before the session's first
  impression) and per variant the sums over exposed sessions of the count and value of each
  such session's events from its first impression on, their squares and product (``terms``):
  a proportion, mean or ratio metric's sufficient statistics. A metric counts what a unit did
  once exposed; what it did before is only CUPED's covariate;
- for the event names CUPED metrics measure, per exposed session, name and pre-exposure window
  (days), its covariate: the value of its pre-exposure events stamped within that window before
  its first impression; and per variant the sums of the covariate, its square and its product
  with the value. A session's events sent before it has any impression wait, by timestamp, in
  a small table keyed by session until its first impression is stored, which reads and
  deletes them: the write that exposes a session judges them against its exposure time, and
  an event stored once the session is exposed is judged against the exposure known then;
- for the performance log's served calls (``record_calls``), one row per unit and arm holding
  every performance field, and the same terms per arm;
- for each cross-source ratio metric (cost per conversion), one row per unit, arm and metric
  that both paths add their side to (``UnitRatio``), and the ratio's terms per arm over the
  units exposed or served (``_add_ratios``).

A session's contribution to the totals depends on its whole history (it is *exposed* from its
first impression on; the value statistics use the square of its total value), so the tally
upserts return each session's tally after the write; the tally before it is that minus what
this write added. The upserts lock the rows they touch, so concurrent writers (several server
processes) see each other's committed tallies and every transition is counted exactly once.
Every table's rows are written in key order, and the tables always in the same order, so two
writers never wait on each other in a cycle (a deadlock).
"""

from __future__ import annotations

import operator
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import repeat
from typing import Any

from sqlalchemy import ColumnElement, Row, Table, delete, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.upsert import insert_ignore, insert_or_add, insert_rows
from promptlooper.online.models import (
    DailyTotals,
    ExperimentEvent,
    ExperimentTotals,
    MetricTotals,
    PendingEvents,
    SessionArms,
    SessionTally,
    UnitCalls,
    UnitCovariate,
    UnitEvents,
    UnitRatio,
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
_SESSION_ROW = (*_SESSION_KEY, "events", "impressions", "conversions", "value", "exposed_at")
_UNIT_ROW = (*_UNIT_KEY, "count", "value", "pre_count", "pre_value")
_COVARIATE_KEY = (*_UNIT_KEY, "window_days")
_PENDING_ROW = (*_UNIT_KEY, "created_at", "value")

Windows = Mapping[str, frozenset[int]]
"""Per event name, the pre-exposure windows (days) of the CUPED metrics measuring it."""


def _zero_totals() -> dict[str, float]:
    return dict.fromkeys(TOTALS, 0)


async def record(
    session: AsyncSession,
    events: list[dict[str, Any]],
    tracked: frozenset[str] = frozenset(),
    windows: Windows | None = None,
    ratios: Sequence[CrossRatio] = (),
) -> int:
    """Store ``events`` (rows of ``online_events``) and add the ones stored to the totals, in
    the caller's transaction; the events named in ``tracked`` (defined metrics' sources) are
    also kept per session for the metrics' totals, with the covariates of the CUPED
    ``windows`` of their names, and the exposed sessions' sides of the cross-source
    ``ratios``. Returns how many were stored (retries excluded)."""
    events = await _store(session, _first_of_each_id(sorted(events, key=_event_order)))
    if not events:
        return 0
    # Per session and variant, what this write adds: events, impressions, conversions and their
    # value.
    counts: defaultdict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0])
    totals: defaultdict[tuple[str, str], dict[str, float]] = defaultdict(_zero_totals)
    # The day of each session's first impression and first conversion in this write.
    firsts: defaultdict[tuple[str, str, str], list[date | None]] = defaultdict(lambda: [None, None])
    # The time of each session's first impression in this write.
    impressed: dict[tuple[str, str, str], datetime] = {}
    for event in events:
        key, variant = event["experiment_key"], event["variant_key"]
        event_type = event["event_type"]
        session_key = (key, variant, event["session_id"])
        tally = counts[session_key]
        tally[0] += 1
        if event_type == "impression" or event_type == "conversion":
            _first_day(firsts[session_key], event_type == "conversion", event["created_at"])
        if event_type == "impression":
            tally[1] += 1
            seen = impressed.get(session_key)
            if seen is None or event["created_at"] < seen:
                impressed[session_key] = event["created_at"]
        tally[2] += event_type == "conversion"
        variant_totals = totals[(key, variant)]
        if event_type in EVENT_COUNTS:
            variant_totals[EVENT_COUNTS[event_type]] += 1
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
            | {"exposed_at": impressed.get((k, v, s))}
            for (k, v, s), (n, i, c, x) in sorted(counts.items())
        ],
        returning=_SESSION_ROW,
        earliest=("exposed_at",),
    )
    arms: Counter[tuple[str, str]] = Counter()
    daily: defaultdict[tuple[str, str, date], list[int]] = defaultdict(lambda: [0, 0])
    # Per session: exposed before this write, exposed now, and sent events before it.
    exposure: dict[tuple[str, str, str], tuple[bool, bool, bool]] = {}
    # Per session: its earliest impression known after this write.
    exposed_at: dict[tuple[str, str, str], datetime | None] = {}
    for key, variant, session_id, *new, since in after:
        session_key = (key, variant, session_id)
        added = counts[session_key]
        exposure[session_key] = (new[1] > added[1], new[1] > 0, new[0] > added[0])
        exposed_at[session_key] = since
        first, exposed, converting = _fold(totals[(key, variant)], added, new)
        if first:
            arms[(key, session_id)] += 1
        if exposed or converting:
            impressed_on, converted = firsts[session_key]
            if exposed:
                daily[(key, variant, impressed_on)][0] += 1  # type: ignore[index]
            if converting:
                # Converting from the later of its exposure and its conversion; one of them
                # (or both) happened in this write.
                day = max(d for d in (converted, impressed_on if exposed else None) if d)
                daily[(key, variant, day)][1] += 1
    terms: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    sides: dict[tuple[str, str, str, str], list[float]] = {}
    if tracked:
        measured = _Measured(events, tracked, windows or {}, exposed_at)
        terms, sides = await _measure(session, measured, exposure)
    if ratios:
        exposed = [k for k, (_, now, _) in exposure.items() if now]
        await _add_ratios(session, _event_sides(ratios, exposed, sides), terms)
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
"""The prefix of a performance-log field's terms (``perf:cost``): apart from event names,
which are slugs and cannot hold a colon."""
MOMENTS = ("units", "n", "v", "nn", "vv", "nv")
"""The terms every source has, in the order ``moments`` gives them."""


def moments(count: float, value: float, present: bool) -> tuple[float, ...]:
    """One unit's share of the ``MOMENTS`` terms: whether it counts as having the source, the
    number and value of its events (or calls), their squares and their product."""
    return (float(present), count, value, count * count, value * value, count * value)


def terms(
    event_type: str, count: float, value: float, covariates: Mapping[int, float] | None = None
) -> dict[str, float]:
    """One exposed session's share of its variant's totals for one event name, from the
    ``count`` and ``value`` of the events it sent from its first exposure on (it had the event
    when it sent one then), and its CUPED ``covariates`` by window (days): the ``MOMENTS``,
    and per window the covariate, its square and its product with the value
    (``covariate_terms`` names them)."""
    names = (f"{event_type}:{m}" for m in MOMENTS)
    share = dict(zip(names, moments(count, value, count > 0), strict=True))
    for days, pre in (covariates or {}).items():
        p, pp, vp = covariate_terms(event_type, days)
        share |= {p: pre, pp: pre * pre, vp: value * pre}
    return share


def covariate_terms(event_type: str, days: int) -> tuple[str, str, str]:
    """The names of the terms of an event name's CUPED covariate over a window of ``days``:
    its sum, sum of squares and sum of products with the value (``purchase:p14``...)."""
    return f"{event_type}:p{days}", f"{event_type}:pp{days}", f"{event_type}:vp{days}"


class _Measured:
    """What the stored ``events`` of tracked names add, per session, variant and name: their
    number and value, and those of them sent before the session's first exposure (``rows``);
    per CUPED window, the value of the pre-exposure ones within it (``covered``); and those
    sent while the session has no impression (``pending``, by timestamp), whose windows are
    not known yet.

    An event is pre-exposure when its timestamp is earlier than the session's earliest
    impression known once this write is done (``exposed_at``), or the session has no
    impression yet; within a window of ``d`` days when it is stamped at most ``d`` days
    before that impression. It is judged once, by the write that stores it (a pending one:
    by the write that exposes its session), so a late impression with an earlier timestamp
    leaves the events already judged as they were."""

    def __init__(
        self,
        events: list[dict[str, Any]],
        tracked: frozenset[str],
        windows: Windows,
        exposed_at: dict[tuple[str, str, str], datetime | None],
    ) -> None:
        self.windows = windows
        self.exposed_at = exposed_at
        self.rows: defaultdict[tuple[str, str, str, str], list[float]] = defaultdict(
            lambda: [0, 0.0, 0, 0.0]
        )
        self.covered: defaultdict[tuple[str, str, str, str, int], float] = defaultdict(float)
        self.pending: defaultdict[tuple[str, str, str, str, datetime], float] = defaultdict(float)
        for event in events:
            event_type = event["event_type"]
            if event_type not in tracked:
                continue
            session_key = (event["experiment_key"], event["variant_key"], event["session_id"])
            row = self.rows[(*session_key, event_type)]
            amount = 1.0 if event["value"] is None else event["value"]
            row[0] += 1
            row[1] += amount
            since = exposed_at[session_key]
            if since is None or event["created_at"] < since:
                row[2] += 1
                row[3] += amount
                if since is None and event_type in windows:
                    self.pending[(*session_key, event_type, event["created_at"])] += amount
                elif since is not None:
                    self.cover(session_key, event_type, event["created_at"], amount)

    def cover(
        self, session_key: tuple[str, str, str], event_type: str, moment: datetime, amount: float
    ) -> None:
        """Add a pre-exposure event of an exposed session to the covariates of the windows
        it falls in."""
        since = self.exposed_at[session_key]
        assert since is not None
        for days in self.windows.get(event_type, ()):
            if moment >= since - timedelta(days=days):
                self.covered[(*session_key, event_type, days)] += amount


def _share(
    event_type: str, row: Sequence[float], covariates: Mapping[int, float]
) -> dict[str, float]:
    """``terms`` of a session's row of one event name (its count, value, pre-exposure count
    and pre-exposure value) and its covariates by window."""
    count, value, pre_count, pre_value = row
    return terms(event_type, count - pre_count, value - pre_value, covariates)


async def _measure(
    session: AsyncSession,
    measured: _Measured,
    exposure: dict[tuple[str, str, str], tuple[bool, bool, bool]],
) -> tuple[defaultdict[tuple[str, str, str], float], dict[tuple[str, str, str, str], list[float]]]:
    """Add this write's tracked events to each session's running counts and values (all, and
    before exposure) and covariates, and return what that changes in the variants' metric
    terms, and per session and event name in what the metrics count (its number and value of
    events from its exposure on: a cross-source ratio's side). Only exposed sessions count,
    as for the built-in metrics: a session exposed before this write moves its share from the
    old values to the new (a pre-exposure event arriving late moves its covariate); one
    exposed by this write brings its whole share, the event names it sent before included
    (read back only when it had earlier events)."""
    after = await insert_or_add(
        session,
        UnitEvents.__table__,  # type: ignore[arg-type]
        _UNIT_KEY,
        [{"experiment_key": k, "variant_key": v, "session_id": s, "event_type": e,
          "count": c, "value": x, "pre_count": pc, "pre_value": px}
         for (k, v, s, e), (c, x, pc, px) in sorted(measured.rows.items())],
        returning=_UNIT_ROW,
    )  # fmt: skip
    changes: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    sides: defaultdict[tuple[str, str, str, str], list[float]] = defaultdict(lambda: [0.0, 0.0])
    # Sessions this write exposed after earlier events: all their rows are read back below.
    newly = {k for k, (was, now, earlier) in exposure.items() if now and not was and earlier}
    exposed_rows = [row for row in after if exposure[tuple(row[:3])][1]]
    newly_rows = await _rows_of(session, newly)
    covariates = await _covariates(session, measured, [*exposed_rows, *newly_rows], newly)

    def add(unit: tuple[str, str, str, str], share: dict[str, float], sign: float = 1.0) -> None:
        key, variant, _, event_type = unit
        for term, amount in share.items():
            changes[(key, variant, term)] += sign * amount
        side = sides[unit]
        side[0] += sign * share[f"{event_type}:n"]
        side[1] += sign * share[f"{event_type}:v"]

    def windows(row: tuple[str, str, str, str], before: bool = False) -> dict[int, float]:
        """A row's covariates after this write, or before it (less what it added)."""
        found = {}
        for days in measured.windows.get(row[3], ()):
            value = covariates[(*row, days)]
            found[days] = value - measured.covered.get((*row, days), 0.0) if before else value
        return found

    for key, variant, session_id, event_type, *new in exposed_rows:
        session_key = (key, variant, session_id)
        if session_key in newly:
            continue
        row = (*session_key, event_type)
        add(row, _share(event_type, new, windows(row)))
        if exposure[session_key][0]:  # exposed before: its old share goes
            added = measured.rows[row]
            old = [now - more for now, more in zip(new, added, strict=True)]
            add(row, _share(event_type, old, windows(row, before=True)), -1.0)
    for key, variant, session_id, event_type, *row in newly_rows:
        unit = (key, variant, session_id, event_type)
        add(unit, _share(event_type, row, windows(unit)))
    return changes, sides


async def _covariates(
    session: AsyncSession,
    measured: _Measured,
    rows: Sequence[Sequence[Any]],
    newly: set[tuple[str, str, str]],
) -> dict[tuple[str, str, str, str, int], float]:
    """Add this write's covariates to the exposed sessions' (the pending events of those it
    exposes included, which then stop waiting), and keep the pending events of the sessions
    still without an impression. Returns the covariate of every window of the exposed
    sessions' rows given, after this write."""
    windows = measured.windows
    if not windows:
        return {}
    waking = {tuple(row[:3]) for row in rows if row[3] in windows} & newly
    if waking:
        table = PendingEvents.__table__
        waiting = await session.execute(
            delete(table)
            .where(_of_sessions(table, waking))  # type: ignore[arg-type]
            .returning(*(table.c[name] for name in _PENDING_ROW))
        )
        for key, variant, session_id, event_type, moment, value in waiting.all():
            measured.cover((key, variant, session_id), event_type, moment, value)
    wanted = sorted({(*row[:4], days) for row in rows for days in windows.get(row[3], ())})
    found = await insert_or_add(
        session,
        UnitCovariate.__table__,  # type: ignore[arg-type]
        _COVARIATE_KEY,
        [dict(zip(_COVARIATE_KEY, key, strict=True)) | {"value": measured.covered.get(key, 0.0)}
         for key in wanted],
        returning=(*_COVARIATE_KEY, "value"),
    )  # fmt: skip
    await insert_or_add(
        session,
        PendingEvents.__table__,  # type: ignore[arg-type]
        _PENDING_ROW[:-1],
        [dict(zip(_PENDING_ROW, (*key, value), strict=True))
         for key, value in sorted(measured.pending.items())],
    )  # fmt: skip
    return {tuple(row[:5]): row[5] for row in found}  # type: ignore[misc]


async def _rows_of(session: AsyncSession, sessions: set[tuple[str, str, str]]) -> list[Row[Any]]:
    """Every tracked event row of the given sessions (the ones this write touched as they are
    after it: the upsert above holds their locks)."""
    if not sessions:
        return []
    table = UnitEvents.__table__
    found = await session.execute(
        select(*(table.c[name] for name in _UNIT_ROW)).where(_of_sessions(table, sessions))  # type: ignore[arg-type]
    )
    return list(found.all())


def _of_sessions(table: Table, sessions: set[tuple[str, str, str]]) -> ColumnElement[bool]:
    """The rows of the given sessions (experiment, variant, session id), as one list of ids
    per experiment and variant: PostgreSQL plans a list of ids in an index scan, where a list
    of tuples as long as a write's sessions takes it longer to plan than to run."""
    grouped: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
    for key, variant, session_id in sessions:
        grouped[(key, variant)].append(session_id)
    return or_(
        *(
            (table.c.experiment_key == key)
            & (table.c.variant_key == variant)
            & table.c.session_id.in_(sorted(ids))
            for (key, variant), ids in sorted(grouped.items())
        )
    )


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


CALL_FIELDS = tuple(field for field in PERFORMANCE_FIELDS if field != "calls")
_CALL_KEY = ("experiment_key", "variant_key", "unit_id")
_CALL_COLUMNS = ("calls", *(c for field in CALL_FIELDS for c in (f"{field}_calls", field)))
_CALL_ROW = (*_CALL_KEY, *_CALL_COLUMNS)
_CALL_TERMS = tuple(
    f"{PERFORMANCE}{field}:{m}" for field in ("calls", *CALL_FIELDS) for m in MOMENTS
)
_CALL_SLOTS = tuple((field, 2 * index + 1) for index, field in enumerate(CALL_FIELDS))
"""Each field and where its count sits in a ``_CALL_COLUMNS`` row (its sum right after)."""


def _call_shares(rows: Sequence[Sequence[float]]) -> list[float]:
    """The sum over units of each one's share of its arm's ``_CALL_TERMS``, from their
    ``UnitCalls`` columns (in ``_CALL_COLUMNS`` order): ``calls`` is a unit's number of calls
    for count and value alike; a field's unit has it when the sum of its values is positive.
    Summed a column at a time (each sum one pass in compiled code) rather than a list of terms
    per unit: this runs for every unit of every batch of served calls."""
    columns = list(zip(*rows, strict=True))
    total = _moment_sums(columns[0], columns[0])
    for index in range(1, len(columns), 2):
        total += _moment_sums(columns[index], columns[index + 1])
    return total


def _moment_sums(counts: Sequence[float], values: Sequence[float]) -> list[float]:
    """The sums of ``moments`` over units (in ``MOMENTS`` order), given each one's count and
    value."""
    return [
        float(sum(map(operator.lt, repeat(0), values))),
        sum(counts),
        sum(values),
        sum(map(operator.mul, counts, counts)),
        sum(map(operator.mul, values, values)),
        sum(map(operator.mul, counts, values)),
    ]


async def record_calls(
    session: AsyncSession, calls: Sequence[dict[str, Any]], ratios: Sequence[CrossRatio] = ()
) -> None:
    """Add served calls (``experiment_key``, ``arm_key``, ``unit_id`` and the performance
    fields) to their units' running totals and their arms' metric terms, in the caller's
    transaction. Every unit served counts as exposed: ``perf:calls`` counts its calls, and
    each field sums the values of the calls that gave one (a cost left out is unknown, not
    zero). A unit's fields share one row, written by one upsert per batch; its sides of the
    cross-source ``ratios`` are added to its ratio rows."""
    units: dict[tuple[str, str, str], list[Any]] = {}
    for call in calls:
        key = (call["experiment_key"], call["arm_key"], call["unit_id"])
        row = units.get(key)
        if row is None:
            row = units[key] = [0] * len(_CALL_COLUMNS)
        row[0] += 1
        for field, slot in _CALL_SLOTS:
            if (value := call.get(field)) is not None:
                row[slot] += 1
                row[slot + 1] += float(value)
    after = await insert_or_add(
        session,
        UnitCalls.__table__,  # type: ignore[arg-type]
        _CALL_KEY,
        [dict(zip(_CALL_ROW, (*key, *row), strict=True)) for key, row in sorted(units.items())],
        returning=_CALL_ROW,
    )
    terms: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    if ratios:
        await _add_ratios(session, _call_sides(ratios, units), terms)
    # Per arm, its units' rows after this write, and before it for those that had calls.
    now: defaultdict[tuple[str, str], list[Sequence[float]]] = defaultdict(list)
    before: defaultdict[tuple[str, str], list[Sequence[float]]] = defaultdict(list)
    for row in after:
        arm, new = row[:2], row[3:]
        now[arm].append(new)
        added = units[row[:3]]
        if new[0] > added[0]:  # the unit had calls before: its old share goes
            before[arm].append([value - more for value, more in zip(new, added, strict=True)])
    for arm, rows in now.items():
        total = _call_shares(rows)
        if arm in before:
            total = list(map(operator.sub, total, _call_shares(before[arm])))
        for term, amount in zip(_CALL_TERMS, total, strict=True):
            terms[(*arm, term)] += amount
    await _add_terms(session, terms)


RATIO = "x:"
"""The prefix of a cross-source ratio's terms (``x:<metric id>:v``), apart from event names
(slugs) and performance fields (``perf:``)."""


def ratio_source(metric_id: object) -> str:
    """The name a cross-source ratio metric's terms are kept under: its id, since the metric
    alone joins its two sources."""
    return f"{RATIO}{metric_id}"


@dataclass(frozen=True, slots=True)
class CrossRatio:
    """A ratio metric whose denominator is another source: each side a kind and a source."""

    metric: str
    numerator: tuple[str, str]
    denominator: tuple[str, str]


_RATIO_KEY = (*_CALL_KEY, "metric")
_RATIO_COLUMNS = ("exposed", "served", "numerator", "denominator")


def _event_sides(
    ratios: Sequence[CrossRatio],
    exposed: list[tuple[str, str, str]],
    sides: dict[tuple[str, str, str, str], list[float]],
) -> dict[tuple[str, str, str, str], list[float]]:
    """What an event write adds to each exposed session's ratio rows: one more write that saw
    it exposed, and the change in what its events count from exposure on (an event numerator
    its value, an event denominator the number of events)."""
    rows = {}
    for session_key in exposed:
        for ratio in ratios:
            row: list[float] = [1, 0, 0.0, 0.0]  # the counts go in as integers
            for slot, (kind, source) in ((2, ratio.numerator), (3, ratio.denominator)):
                if kind == "event" and (side := sides.get((*session_key, source))):
                    row[slot] = side[1] if slot == 2 else side[0]
            rows[(*session_key, ratio.metric)] = row
    return rows


def _call_sides(
    ratios: Sequence[CrossRatio], units: dict[tuple[str, str, str], list[Any]]
) -> dict[tuple[str, str, str, str], list[float]]:
    """What a write of served calls adds to each unit's ratio rows: its calls, and on a
    performance side the sum of the field's values (``calls``: their number)."""
    rows = {}
    for unit, calls in units.items():
        for ratio in ratios:
            row: list[float] = [0, calls[0], 0.0, 0.0]
            for slot, (kind, source) in ((2, ratio.numerator), (3, ratio.denominator)):
                if kind == "performance":
                    row[slot] = float(
                        calls[0] if source == "calls" else calls[_CALL_COLUMNS.index(source)]
                    )
            rows[(*unit, ratio.metric)] = row
    return rows


def _ratio_share(row: Sequence[float]) -> tuple[float, ...]:
    """One unit's share of its arm's ratio terms (``MOMENTS``, the denominator as the count
    and the numerator as the value, as a same-source ratio has them): a unit counts once an
    event write saw it exposed or it was served."""
    exposed, served, numerator, denominator = row
    return moments(denominator, numerator, exposed > 0 or served > 0)


async def _add_ratios(
    session: AsyncSession,
    rows: dict[tuple[str, str, str, str], list[float]],
    terms: defaultdict[tuple[str, str, str], float],
) -> None:
    """Add one write's sides to the units' ratio rows, and what that changes in their arms'
    ratio terms to ``terms``. The upsert returns each row after this write and holds its lock
    until the transaction ends, so the row before it is that less what was added, even when
    the other path wrote the unit's other side a moment ago: the product of the two sides
    moves by exactly this write's change."""
    if not rows:
        return
    after = await insert_or_add(
        session,
        UnitRatio.__table__,  # type: ignore[arg-type]
        _RATIO_KEY,
        [dict(zip(_RATIO_KEY, key, strict=True)) | dict(zip(_RATIO_COLUMNS, row, strict=True))
         for key, row in sorted(rows.items())],
        returning=(*_RATIO_KEY, *_RATIO_COLUMNS),
    )  # fmt: skip
    for key, variant, unit_id, metric, *new in after:
        added = rows[(key, variant, unit_id, metric)]
        old = [now - more for now, more in zip(new, added, strict=True)]
        source = ratio_source(metric)
        for name, now, before in zip(MOMENTS, _ratio_share(new), _ratio_share(old), strict=True):
            terms[(key, variant, f"{source}:{name}")] += now - before
