"""Event ingestion: judge each event, store the accepted ones once, count the rejected.

An event is refused (``accepted: false``, nothing stored) when experiments are switched off,
when it comes from a crawler or a page on a site outside CORS_ORIGINS, names an unknown
experiment or variant, an experiment that is not running, an event name that is neither built
in nor a defined metric's source, a timestamp far in the future, or oversized metadata. The
reason goes back to the caller and is counted per experiment for the results' health block.

Two things make it fast without giving anything up:

- events are judged against an in-memory snapshot of the registry and the site switch,
  reloaded every ``ttl`` seconds and at once when this process changes either (another
  process's change shows within ``ttl``);
- accepted events are written by group commit (``db/groupcommit.py``): a request is
  answered only after the transaction holding its events has committed, so an acknowledged
  event is durable; the unique index on ``event_id`` stores a retried event once (``tallies.py``),
  and the same transaction adds what was stored to the results' running totals.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper.db.groupcommit import GroupCommit
from promptlooper.db.upsert import insert_or_add
from promptlooper.online import definitions, service, sticky, tallies
from promptlooper.online.bots import is_bot
from promptlooper.online.models import OnlineExperiment, Rejection
from promptlooper.online.schemas import EVENT_TYPES, MAX_METADATA_BYTES, EventIn
from promptlooper.online.tallies import CrossRatio

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=7)
REGISTRY_TTL = 2.0
WRITERS = 3
BUSY_ROWS = 500
"""Another transaction writes beside the others once ``BUSY_ROWS`` events wait. Storing an
event costs PostgreSQL more CPU than the server spends on it, so under a backlog the
database needs transactions on both cores while the server prepares the next: batches of
1,000 (4 in flight) measured ~42,000 events/s with one writer, ~55,000 with two, ~57,000
with three, and no more with four. Single events are better served by one writer
committing larger groups."""


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str | None = None


ACCEPTED = Verdict(True)


@cache
def refused(reason: str) -> Verdict:
    return Verdict(False, reason)


@dataclass(frozen=True, slots=True)
class Target:
    """What ingestion needs to know of one experiment."""

    live: bool
    variant_keys: frozenset[str]
    control: str
    guarded: bool
    """A guardrail may have stopped an arm (auto-stop is on, or an arm is stopped): its units,
    served the control, may send events naming it. The stop itself is read when the events are
    stored, as this snapshot may predate it."""

    @classmethod
    def of(cls, experiment: OnlineExperiment) -> Target:
        keys = frozenset(v["variant_key"] for v in experiment.variants)
        control = experiment.variants[0]["variant_key"]
        guarded = experiment.auto_stop or bool(experiment.stopped_arms)
        return cls(service.is_live(experiment), keys, control, guarded)


@dataclass(frozen=True, slots=True)
class Snapshot:
    enabled: bool
    targets: dict[str, Target]
    taken_at: float
    tracked: frozenset[str] = frozenset()
    """The event names defined metrics measure: accepted besides the built-in ones, and kept
    per session for the metrics' totals."""
    windows: tallies.Windows = field(default_factory=dict)
    """The CUPED metrics' pre-exposure windows of those names."""
    ratios: tuple[CrossRatio, ...] = ()
    """The cross-source ratio metrics, whose exposed units' sides each write keeps."""


def judge(
    event: EventIn,
    event_type: str,
    target: Target | None,
    now: datetime,
    tracked: frozenset[str] = frozenset(),
) -> str | None:
    """Why ``event`` must be refused, or None when it is acceptable: its name must be a
    built-in event type or the source of a defined metric (``tracked``)."""
    if target is None:
        return "unknown_experiment"
    if not target.live:
        return "experiment_inactive"
    if event.variant_key not in target.variant_keys:
        return "unknown_variant"
    if event_type not in EVENT_TYPES and event_type not in tracked:
        return "unknown_event"
    if event.timestamp is not None:
        if event.timestamp > now + MAX_CLOCK_SKEW:
            return "future_timestamp"
        if event.timestamp < now - MAX_AGE:
            return "stale_timestamp"
    if event.metadata is not None and len(json.dumps(event.metadata)) > MAX_METADATA_BYTES:
        return "metadata_too_large"
    return None


@dataclass
class _Pending:
    rows: list[dict[str, Any]]
    rejected: Counter[tuple[str, str]]
    tracked: frozenset[str]
    windows: tallies.Windows
    ratios: tuple[CrossRatio, ...]
    served_control: dict[str, list[int]] = field(default_factory=dict)
    """Per experiment a guardrail may have stopped an arm of, the rows (indices) of events
    naming the control: a stopped arm's unit among them counts in its own arm (``_intended``)."""


class Intake:
    """Ingestion for one app: the registry snapshot and the group-commit writer."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        reader: AsyncEngine,
        ttl: float = REGISTRY_TTL,
    ):
        self._sessionmaker = sessionmaker
        self._reader = reader  # the registry is read beside the writers
        self._ttl = ttl
        self._snapshot: Snapshot | None = None
        self._reloading = asyncio.Lock()
        self._log = GroupCommit(
            sessionmaker, _commit, size=lambda item: len(item.rows), writers=WRITERS, busy=BUSY_ROWS
        )

    def invalidate(self) -> None:
        """Forget the snapshot: the registry or the site switch changed."""
        self._snapshot = None

    async def _current(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is not None and time.monotonic() - snapshot.taken_at <= self._ttl:
            return snapshot
        # One reload for everyone: the requests that find the snapshot stale wait for it.
        async with self._reloading:
            snapshot = self._snapshot
            if snapshot is None or time.monotonic() - snapshot.taken_at > self._ttl:
                async with self._sessionmaker(bind=self._reader) as session:
                    enabled = await service.experiments_enabled(session)
                    experiments = await session.scalars(select(OnlineExperiment))
                    targets = {e.experiment_key: Target.of(e) for e in experiments}
                    tracked = await definitions.tracked_events(session)
                    windows = await definitions.cuped_windows(session)
                    ratios = tuple(await definitions.cross_ratios(session))
                snapshot = Snapshot(enabled, targets, time.monotonic(), tracked, windows, ratios)
                self._snapshot = snapshot
            return snapshot

    async def ingest(
        self,
        events: Sequence[EventIn],
        *,
        user_agent: str | None,
        event_type: str | None = None,
        origin_allowed: bool = True,
    ) -> list[Verdict]:
        """One verdict per event, in order, once the accepted ones are committed;
        ``event_type`` fixes the type (the impression endpoint), otherwise each event's
        ``event_name`` is its type. ``origin_allowed`` false (a page on a site outside
        CORS_ORIGINS sent it) refuses every event, as a crawler's are."""
        snapshot = await self._current()
        if not snapshot.enabled:
            return [refused("experiments_disabled")] * len(events)
        sender = "origin" if not origin_allowed else "bot" if is_bot(user_agent) else None
        now = datetime.now(UTC)
        verdicts: list[Verdict] = []
        rows: list[dict[str, Any]] = []
        rejected: Counter[tuple[str, str]] = Counter()
        served_control: dict[str, list[int]] = {}
        for event in events:
            kind = event_type or event.event_name or ""
            target = snapshot.targets.get(event.experiment_key)
            reason = (
                sender
                if sender is not None and target is not None
                else judge(event, kind, target, now, snapshot.tracked)
            )
            verdicts.append(ACCEPTED if reason is None else refused(reason))
            if reason is not None:
                if target is not None:
                    rejected[(event.experiment_key, reason)] += 1
                continue
            if target is not None and target.guarded and event.variant_key == target.control:
                served_control.setdefault(event.experiment_key, []).append(len(rows))
            rows.append(
                {
                    "experiment_key": event.experiment_key,
                    "variant_key": event.variant_key,
                    "session_id": event.session_id,
                    "path": event.path,
                    "event_type": kind,
                    "event_id": event.event_id,
                    "value": event.value,
                    "metadata": event.metadata,
                    "created_at": event.timestamp or now,
                }
            )
        if rows or rejected:
            pending = _Pending(
                rows, rejected, snapshot.tracked, snapshot.windows, snapshot.ratios, served_control
            )
            await self._log.submit(pending)
        return verdicts


async def _commit(session: AsyncSession, batch: list[_Pending]) -> list[None]:
    rejected: Counter[tuple[str, str]] = Counter()
    tracked: frozenset[str] = frozenset()
    windows: dict[str, frozenset[int]] = {}
    ratios: dict[str, CrossRatio] = {}
    for item in batch:
        rejected.update(item.rejected)
        tracked |= item.tracked
        windows |= item.windows
        ratios |= {ratio.metric: ratio for ratio in item.ratios}
        await _intended(session, item)
    rows = [row for item in batch for row in item.rows]
    await tallies.record(
        session, rows, tracked, windows, sorted(ratios.values(), key=lambda r: r.metric)
    )
    await insert_or_add(
        session,
        Rejection.__table__,  # type: ignore[arg-type]
        ("experiment_key", "reason"),
        [{"experiment_key": k, "reason": r, "count": n} for (k, r), n in sorted(rejected.items())],
    )
    return [None] * len(batch)


async def _intended(session: AsyncSession, item: _Pending) -> None:
    """File the events a stopped arm's units sent while served the control under the arm they
    are assigned (intent to treat): a unit counts in one arm, the control's metrics hold only
    the control's units, and the SRM check expects the assignment weights. The browser script
    names the assigned arm itself; this covers callers that name the variant they served."""
    for key, indices in item.served_control.items():
        query = select(OnlineExperiment).where(OnlineExperiment.experiment_key == key)
        experiment = await session.scalar(query)
        if experiment is None or not experiment.stopped_arms:
            continue
        units = {item.rows[i]["session_id"] for i in indices}
        if experiment.type == "bandit":
            # Only the arms the server gave: a unit the browser script placed keeps its arm in
            # its cookie, and its events name that arm already.
            assigned = await sticky.stored(session, key, units)
        else:
            assigned = await service.assigned_variants(session, experiment, units, store=False)
        for i in indices:
            arm = assigned.get(item.rows[i]["session_id"])
            if arm in experiment.stopped_arms:
                item.rows[i]["variant_key"] = arm
