"""Event ingestion: judge each event, store the accepted ones once, count the rejected.

An event is refused (``accepted: false``, nothing stored) when experiments are switched off,
when it comes from a crawler, names an unknown experiment or variant, an experiment that is not
running, an unknown event type, a timestamp far in the future, or oversized metadata. The
reason goes back to the caller and is counted per experiment for the results' health block.
Accepted events are written with ``INSERT ... ON CONFLICT DO NOTHING`` so a retried
``event_id`` is stored once; the caller commits before answering, so an acknowledged event is
durable.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.upsert import insert_ignore
from promptlooper.online import service
from promptlooper.online.bots import is_bot
from promptlooper.online.models import ExperimentEvent, OnlineExperiment, Rejection
from promptlooper.online.schemas import EVENT_TYPES, MAX_METADATA_BYTES, EventIn

MAX_CLOCK_SKEW = timedelta(minutes=5)
MAX_AGE = timedelta(days=7)


@dataclass(frozen=True, slots=True)
class Verdict:
    accepted: bool
    reason: str | None = None


def judge(
    event: EventIn,
    event_type: str,
    experiment: OnlineExperiment | None,
    now: datetime,
) -> str | None:
    """Why ``event`` must be refused, or None when it is acceptable."""
    if experiment is None:
        return "unknown_experiment"
    if not service.is_live(experiment):
        return "experiment_inactive"
    if event.variant_key not in {v["variant_key"] for v in experiment.variants}:
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


async def ingest(
    session: AsyncSession,
    events: Sequence[EventIn],
    *,
    user_agent: str | None,
    event_type: str | None = None,
) -> list[Verdict]:
    """One verdict per event, in order; ``event_type`` fixes the type (the impression
    endpoint), otherwise each event's ``event_name`` is its type."""
    if not await service.experiments_enabled(session):
        return [Verdict(False, "experiments_disabled")] * len(events)
    keys = {e.experiment_key for e in events}
    experiments = {
        e.experiment_key: e
        for e in await session.scalars(
            select(OnlineExperiment).where(OnlineExperiment.experiment_key.in_(keys))
        )
    }
    bot = is_bot(user_agent)
    now = datetime.now(UTC)
    verdicts: list[Verdict] = []
    rows: list[dict[str, Any]] = []
    rejected: Counter[tuple[str, str]] = Counter()
    for event in events:
        kind = event_type or event.event_name or ""
        experiment = experiments.get(event.experiment_key)
        reason = "bot" if bot and experiment is not None else judge(event, kind, experiment, now)
        verdicts.append(Verdict(reason is None, reason))
        if reason is not None:
            if experiment is not None:
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
    await insert_ignore(session, ExperimentEvent.__table__, rows)  # type: ignore[arg-type]
    await _count_rejections(session, rejected)
    return verdicts


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
