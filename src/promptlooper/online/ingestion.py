"""Event ingestion: judge each event, store the accepted ones once, count the rejected.

An event is refused (``accepted: false``, nothing stored) when experiments are switched off,
when it comes from a crawler, names an unknown experiment or variant, an experiment that is not
running, an unknown event type, a timestamp far in the future, or oversized metadata. The
reason goes back to the caller and is counted per experiment for the results' health block.

Two things make it fast without giving anything up:

- events are judged against an in-memory snapshot of the registry and the site switch,
  reloaded every ``ttl`` seconds and at once when this process changes either (another
  process's change shows within ``ttl``);
- accepted events are written by group commit: requests that arrive while a transaction is
  being committed wait for the next one, which writes them all together. A request is answered
  only after the transaction holding its events has committed, so an acknowledged event is
  durable; ``INSERT ... ON CONFLICT DO NOTHING`` on ``event_id`` stores a retried event once.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.db.upsert import insert_ignore
from promptlooper.online import service
from promptlooper.online.bots import is_bot
from promptlooper.online.models import ExperimentEvent, OnlineExperiment, Rejection
from promptlooper.online.schemas import EVENT_TYPES, MAX_METADATA_BYTES, EventIn

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=7)
REGISTRY_TTL = 2.0


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Target:
    """What ingestion needs to know of one experiment."""

    live: bool
    variant_keys: frozenset[str]

    @classmethod
    def of(cls, experiment: OnlineExperiment) -> Target:
        keys = frozenset(v["variant_key"] for v in experiment.variants)
        return cls(service.is_live(experiment), keys)


@dataclass(frozen=True, slots=True)
class Snapshot:
    enabled: bool
    targets: dict[str, Target]
    taken_at: float


def judge(event: EventIn, event_type: str, target: Target | None, now: datetime) -> str | None:
    """Why ``event`` must be refused, or None when it is acceptable."""
    if target is None:
        return "unknown_experiment"
    if not target.live:
        return "experiment_inactive"
    if event.variant_key not in target.variant_keys:
        return "unknown_variant"
    if event_type not in EVENT_TYPES:
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
    done: asyncio.Future[None]


class Intake:
    """Ingestion for one app: the registry snapshot and the group-commit writer."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], ttl: float = REGISTRY_TTL):
        self._sessionmaker = sessionmaker
        self._ttl = ttl
        self._snapshot: Snapshot | None = None
        self._pending: list[_Pending] = []
        self._writer: asyncio.Task[None] | None = None

    def invalidate(self) -> None:
        """Forget the snapshot: the registry or the site switch changed."""
        self._snapshot = None

    async def _current(self) -> Snapshot:
        snapshot = self._snapshot
        if snapshot is None or time.monotonic() - snapshot.taken_at > self._ttl:
            async with self._sessionmaker() as session:
                enabled = await service.experiments_enabled(session)
                experiments = await session.scalars(select(OnlineExperiment))
                targets = {e.experiment_key: Target.of(e) for e in experiments}
            snapshot = Snapshot(enabled, targets, time.monotonic())
            self._snapshot = snapshot
        return snapshot

    async def ingest(
        self, events: Sequence[EventIn], *, user_agent: str | None, event_type: str | None = None
    ) -> list[Verdict]:
        """One verdict per event, in order, once the accepted ones are committed;
        ``event_type`` fixes the type (the impression endpoint), otherwise each event's
        ``event_name`` is its type."""
        snapshot = await self._current()
        if not snapshot.enabled:
            return [Verdict(False, "experiments_disabled")] * len(events)
        bot = is_bot(user_agent)
        now = datetime.now(UTC)
        verdicts: list[Verdict] = []
        rows: list[dict[str, Any]] = []
        rejected: Counter[tuple[str, str]] = Counter()
        for event in events:
            kind = event_type or event.event_name or ""
            target = snapshot.targets.get(event.experiment_key)
            reason = "bot" if bot and target is not None else judge(event, kind, target, now)
            verdicts.append(Verdict(reason is None, reason))
            if reason is not None:
                if target is not None:
                    rejected[(event.experiment_key, reason)] += 1
                continue
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
            await self._write(rows, rejected)
        return verdicts

    async def _write(self, rows: list[dict[str, Any]], rejected: Counter[tuple[str, str]]) -> None:
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(rows, rejected, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain())
        await done

    async def _drain(self) -> None:
        """Commit everything pending, again and again, until nothing is left."""
        while self._pending:
            batch, self._pending = self._pending, []
            rows = [row for item in batch for row in item.rows]
            rejected: Counter[tuple[str, str]] = Counter()
            for item in batch:
                rejected.update(item.rejected)
            try:
                async with self._sessionmaker() as session:
                    await insert_ignore(session, ExperimentEvent.__table__, rows)  # type: ignore[arg-type]
                    await _count_rejections(session, rejected)
                    await session.commit()
            except Exception as exc:
                for item in batch:
                    if not item.done.done():
                        item.done.set_exception(exc)
            else:
                for item in batch:
                    if not item.done.done():
                        item.done.set_result(None)


async def _count_rejections(session: AsyncSession, counts: Counter[tuple[str, str]]) -> None:
    if not counts:
        return
    table = Rejection.__table__
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    for (key, reason), count in sorted(counts.items()):
        statement = dialect.insert(table).values(experiment_key=key, reason=reason, count=count)
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=["experiment_key", "reason"],
                set_={"count": table.c.count + statement.excluded.count},
            )
        )
