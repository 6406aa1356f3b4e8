"""Storing events together with the running totals the results are read from.

Results must answer in well under a second with millions of events stored, so nothing reads
the events back: each write folds the events it actually stored (a retried ``event_id`` is
skipped by the insert and so never counted) into

- one tally per session and variant (events, impressions, conversions, value),
- one row per session and experiment counting the variants it was seen in,
- one totals row per variant and one per experiment.

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
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.upsert import insert_ignore, insert_or_add
from promptlooper.online.models import (
    ExperimentEvent,
    ExperimentTotals,
    SessionArms,
    SessionTally,
    VariantTotals,
)

EVENT_COUNTS = {
    "impression": "impressions",
    "cta_click": "cta_clicks",
    "form_start": "form_starts",
    "form_submit": "form_submits",
    "conversion": "conversions",
}
"""Event type → the variant-totals column counting it."""
TOTALS = tuple(c.name for c in VariantTotals.__table__.columns if not c.primary_key)

_STORED = ("experiment_key", "variant_key", "session_id", "event_type", "value")
_SESSION_KEY = ("experiment_key", "variant_key", "session_id")
_TALLIED = ("events", "impressions", "conversions", "value")


@dataclass(frozen=True, slots=True)
class _Tally:
    events: int = 0
    impressions: int = 0
    conversions: int = 0
    value: float = 0.0

    def __sub__(self, other: _Tally) -> _Tally:
        return _Tally(
            self.events - other.events,
            self.impressions - other.impressions,
            self.conversions - other.conversions,
            self.value - other.value,
        )

    @property
    def exposed(self) -> bool:
        return self.impressions > 0

    @property
    def converting(self) -> bool:
        return self.exposed and self.conversions > 0


def _zero_totals() -> dict[str, float]:
    return dict.fromkeys(TOTALS, 0)


async def record(session: AsyncSession, events: list[dict[str, Any]]) -> int:
    """Store ``events`` (rows of ``online_events``) and add the ones stored to the totals, in
    the caller's transaction. Returns how many were stored (retries excluded)."""
    events = sorted(events, key=_event_order)
    stored = await insert_ignore(session, ExperimentEvent.__table__, events, returning=_STORED)  # type: ignore[arg-type]
    if not stored:
        return 0
    counts: defaultdict[tuple[str, str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0.0])
    totals: defaultdict[tuple[str, str], dict[str, float]] = defaultdict(_zero_totals)
    for key, variant, session_id, event_type, value in stored:
        tally = counts[(key, variant, session_id)]
        tally[0] += 1
        tally[1] += event_type == "impression"
        tally[2] += event_type == "conversion"
        variant_totals = totals[(key, variant)]
        variant_totals[EVENT_COUNTS[event_type]] += 1
        if value:
            tally[3] += value
            variant_totals["value_total"] += value
    sessions = {k: _Tally(*c) for k, c in counts.items()}

    after = await insert_or_add(
        session,
        SessionTally.__table__,  # type: ignore[arg-type]
        _SESSION_KEY,
        [
            dict(zip(_SESSION_KEY, k, strict=True), **_as_row(t))
            for k, t in sorted(sessions.items())
        ],
        returning=(*_SESSION_KEY, *_TALLIED),
    )
    arms: Counter[tuple[str, str]] = Counter()
    for key, variant, session_id, *tally in after:
        new = _Tally(*tally)
        old = new - sessions[(key, variant, session_id)]
        _fold(totals[(key, variant)], old, new)
        if old.events == 0:
            arms[(key, session_id)] += 1
    await _add_arms(session, arms)
    await insert_or_add(
        session,
        VariantTotals.__table__,  # type: ignore[arg-type]
        ("experiment_key", "variant_key"),
        [{"experiment_key": k, "variant_key": v, **t} for (k, v), t in sorted(totals.items())],
    )
    return len(stored)


def _event_order(event: dict[str, Any]) -> tuple[str, str]:
    """Events with ids are inserted in id order: two writers storing the same retried events
    then wait for each other in one direction only."""
    return event["experiment_key"], event["event_id"] or ""


def _as_row(tally: _Tally) -> dict[str, Any]:
    values = (tally.events, tally.impressions, tally.conversions, tally.value)
    return dict(zip(_TALLIED, values, strict=True))


def _fold(totals: dict[str, float], old: _Tally, new: _Tally) -> None:
    """Move one session's contribution to its variant's totals from ``old`` to ``new``."""
    totals["unique_sessions"] += old.events == 0
    totals["exposed"] += new.exposed - old.exposed
    totals["converting"] += new.converting - old.converting
    totals["value_exposed"] += new.value * new.exposed - old.value * old.exposed
    totals["value_squares"] += new.value**2 * new.exposed - old.value**2 * old.exposed


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
