"""The performance log: record served calls, read per-variant metrics and their history.

Records say which variant (None: the agent's base config) and revision served a call; metrics
group them per variant over a time window, with the intervals from ``metrics.py``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.errors import Invalid
from promptlooper.online import service as online
from promptlooper.variants.metrics import Sample, Summary, summarise
from promptlooper.variants.models import PerformanceRecord, Variant
from promptlooper.variants.service import get_agent

Bucket = Literal["hour", "day"]
DEFAULT_WINDOW = timedelta(days=30)
EARLIEST = datetime.min.replace(tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=5)


async def record(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    records: Sequence[Mapping[str, Any]],
) -> int:
    """Store served calls (all or none); a variant of another agent is refused. A call that
    says which ``unit_id`` it served is filed under the online experiment arm that unit is
    assigned to, and counts toward that arm's performance metrics."""
    agent = await get_agent(session, principal, agent_id)
    ids = {r["variant_id"] for r in records if r.get("variant_id") is not None}
    if ids:
        known = set(
            await session.scalars(
                select(Variant.id).where(Variant.agent_id == agent.id, Variant.id.in_(ids))
            )
        )
        unknown = sorted(str(i) for i in ids - known)
        if unknown:
            raise Invalid(f"variant_id: {unknown[0]} is not a variant of this agent")
    units = {r["unit_id"] for r in records if r.get("unit_id") is not None}
    arms = {}
    if units:
        served = set(await session.scalars(select(Variant.id).where(Variant.agent_id == agent.id)))
        arms = await online.arms_for(session, served, units)
    now = utcnow()
    rows = []
    for index, item in enumerate(records):
        at = item.get("timestamp") or now
        if at > now + MAX_CLOCK_SKEW:
            raise Invalid(f"[{index}].timestamp: more than 5 minutes in the future")
        rows.append(
            {
                "id": uuid.uuid4(),
                "agent_id": agent.id,
                "variant_id": item.get("variant_id"),
                "revision": item.get("revision"),
                "latency_ms": item.get("latency_ms"),
                "tokens_in": item.get("tokens_in"),
                "tokens_out": item.get("tokens_out"),
                "cost": item.get("cost"),
                "success": item.get("success", True),
                "quality": item.get("quality"),
                "error": item.get("error"),
                "unit_id": item.get("unit_id"),
                "experiment_key": None,
                "arm_key": None,
                "created_at": at,
            }
        )
        if (arm := arms.get(item.get("unit_id"))) is not None:
            rows[-1] |= {"experiment_key": arm.experiment_key, "arm_key": arm.variant_key}
    await session.execute(insert(PerformanceRecord), rows)
    await online.record_calls(session, [row for row in rows if row["arm_key"] is not None])
    return len(rows)


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    until = until or utcnow()
    # An `until` within the window of year 1 would take `since` before the first datetime.
    since = since or max(until, EARLIEST + DEFAULT_WINDOW) - DEFAULT_WINDOW
    if since >= until:
        raise Invalid("since: must be before until")
    return since, until


async def _samples(
    session: AsyncSession, agent_id: uuid.UUID, since: datetime, until: datetime
) -> list[tuple[uuid.UUID | None, datetime, Sample]]:
    query = select(
        PerformanceRecord.variant_id,
        PerformanceRecord.created_at,
        PerformanceRecord.latency_ms,
        PerformanceRecord.tokens_in,
        PerformanceRecord.tokens_out,
        PerformanceRecord.cost,
        PerformanceRecord.success,
        PerformanceRecord.quality,
    ).where(
        PerformanceRecord.agent_id == agent_id,
        PerformanceRecord.created_at >= since,
        PerformanceRecord.created_at < until,
    )
    return [(row[0], row[1], Sample(*row[2:])) for row in await session.execute(query)]


async def metrics(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
) -> tuple[datetime, datetime, dict[uuid.UUID | None, Summary], dict[uuid.UUID, str]]:
    """Per-variant summaries (key None: the base config) for every variant of the agent."""
    agent = await get_agent(session, principal, agent_id)
    since, until = _window(since, until)
    grouped: dict[uuid.UUID | None, list[Sample]] = defaultdict(list)
    for variant_id, _, sample in await _samples(session, agent.id, since, until):
        grouped[variant_id].append(sample)
    slugs = dict(
        (
            await session.execute(
                select(Variant.id, Variant.slug).where(Variant.agent_id == agent.id)
            )
        ).all()
    )
    keys: list[uuid.UUID | None] = [None, *slugs] if None in grouped else list(slugs)
    return since, until, {key: summarise(grouped.get(key, [])) for key in keys}, slugs


def _bucket_start(at: datetime, bucket: Bucket) -> datetime:
    at = at.replace(minute=0, second=0, microsecond=0)
    return at.replace(hour=0) if bucket == "day" else at


async def history(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    *,
    bucket: Bucket,
    since: datetime | None = None,
    until: datetime | None = None,
) -> list[tuple[datetime, uuid.UUID | None, Summary]]:
    """Summaries per time bucket and variant, oldest first."""
    agent = await get_agent(session, principal, agent_id)
    since, until = _window(since, until)
    grouped: dict[tuple[datetime, uuid.UUID | None], list[Sample]] = defaultdict(list)
    for variant_id, at, sample in await _samples(session, agent.id, since, until):
        grouped[(_bucket_start(at, bucket), variant_id)].append(sample)
    return [
        (start, variant_id, summarise(samples))
        for (start, variant_id), samples in sorted(
            grouped.items(), key=lambda item: (item[0][0], str(item[0][1]))
        )
    ]
