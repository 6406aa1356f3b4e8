"""The performance log: record served calls, read per-variant metrics and their history.

Served calls are written by group commit (``db/groupcommit.py``), as browser events are: a
request's records are judged in memory, then wait for the next transaction, which checks
every waiting request's agent and variants, files their units under their arms and adds them
to the running totals at once; each request is answered when that transaction has committed.

Records say which variant (None: the agent's base config) and revision served a call; metrics
group them per variant over a time window, with the intervals from ``metrics.py``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.db.groupcommit import GroupCommit
from promptlooper.db.upsert import insert_rows
from promptlooper.errors import Invalid, NotFound, NotOwner
from promptlooper.online import service as online
from promptlooper.projects.models import Project
from promptlooper.variants.metrics import Sample, Summary, summarise
from promptlooper.variants.models import Agent, PerformanceRecord, Variant
from promptlooper.variants.service import get_agent

Bucket = Literal["hour", "day"]
DEFAULT_WINDOW = timedelta(days=30)
EARLIEST = datetime.min.replace(tzinfo=UTC)
MAX_CLOCK_SKEW = timedelta(minutes=5)


WRITERS = 3
BUSY_ROWS = 500
"""Once ``BUSY_ROWS`` records wait, another transaction writes beside the running ones (up to
``WRITERS``): as for events, PostgreSQL spends more CPU storing a row than the server spends
preparing it, so under a backlog of batches the database needs transactions on both cores."""


@dataclass(frozen=True, slots=True)
class Submission:
    """One request's served calls, as rows ready to store once the agent, its variants and the
    units' arms are known."""

    principal: Principal
    agent_id: uuid.UUID
    rows: list[dict[str, Any]]


def prepare(
    principal: Principal, agent_id: uuid.UUID, records: Sequence[Mapping[str, Any]]
) -> Submission:
    """The rows of ``records``, judged on what needs no database: a timestamp too far ahead is
    refused here, before the request waits for a transaction."""
    now = utcnow()
    rows = []
    for index, item in enumerate(records):
        at = item.get("timestamp") or now
        if at > now + MAX_CLOCK_SKEW:
            raise Invalid(f"[{index}].timestamp: more than 5 minutes in the future")
        rows.append(
            {
                "id": uuid.uuid4(),
                "agent_id": agent_id,
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
    return Submission(principal, agent_id, rows)


async def store(session: AsyncSession, batch: list[Submission]) -> list[int | Exception]:
    """Store each submission whole or refuse it alone (an agent the caller may not see, a
    variant of another agent), in the caller's transaction; per submission, how many records
    it stored or why not. A record that says which ``unit_id`` it served is filed under the
    online experiment arm that unit is assigned to (read in this transaction, so a stopped arm
    or a bandit unit's stored arm holds as of now), and counts toward that arm's metrics."""
    # The agents' owners and variants in one round trip: every transaction asks.
    query = (
        select(Agent.id, Project.owner_id, Variant.id)
        .join(Project, Project.id == Agent.project_id)
        .outerjoin(Variant, Variant.agent_id == Agent.id)
        .where(Agent.id.in_({item.agent_id for item in batch}))
    )
    owners: dict[uuid.UUID, uuid.UUID] = {}
    variants: defaultdict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
    for agent_id, owner_id, variant_id in await session.execute(query):
        owners[agent_id] = owner_id
        if variant_id is not None:
            variants[agent_id].add(variant_id)
    answers: list[int | Exception] = []
    accepted: list[Submission] = []
    for item in batch:
        try:
            _check(item, owners, variants[item.agent_id])
        except (NotFound, NotOwner, Invalid) as exc:
            answers.append(exc)
            continue
        answers.append(len(item.rows))
        accepted.append(item)
    rows = [row for item in accepted for row in item.rows]
    if not rows:
        return answers
    await _file_under_arms(session, rows, variants)
    await insert_rows(session, PerformanceRecord.__table__, rows)  # type: ignore[arg-type]
    await online.record_calls(session, [row for row in rows if row["arm_key"] is not None])
    return answers


def _check(item: Submission, owners: dict[uuid.UUID, uuid.UUID], known: set[uuid.UUID]) -> None:
    if item.agent_id not in owners:
        raise NotFound("Agent not found")
    item.principal.ensure_can_access(owners[item.agent_id], "project")
    ids = {row["variant_id"] for row in item.rows if row["variant_id"] is not None}
    if unknown := sorted(str(i) for i in ids - known):
        raise Invalid(f"variant_id: {unknown[0]} is not a variant of this agent")


async def _file_under_arms(
    session: AsyncSession,
    rows: list[dict[str, Any]],
    variants: Mapping[uuid.UUID, set[uuid.UUID]],
) -> None:
    units: defaultdict[uuid.UUID, set[str]] = defaultdict(set)
    for row in rows:
        if row["unit_id"] is not None:
            units[row["agent_id"]].add(row["unit_id"])
    arms: dict[uuid.UUID, dict[str, online.Arm]] = {}
    for agent_id, unit_ids in units.items():
        # In order: writers beside each other store a bandit's new units without deadlock.
        arms[agent_id] = await online.arms_for(session, variants[agent_id], sorted(unit_ids))
    for row in rows:
        unit_id = row["unit_id"]
        if unit_id is not None and (arm := arms[row["agent_id"]].get(unit_id)) is not None:
            row["experiment_key"] = arm.experiment_key
            row["arm_key"] = arm.variant_key


def writer(sessionmaker: async_sessionmaker[AsyncSession]) -> GroupCommit[Submission, int]:
    """The app's performance log: requests' records stored by group commit, like events."""
    return GroupCommit(
        sessionmaker, store, size=lambda item: len(item.rows), writers=WRITERS, busy=BUSY_ROWS
    )


async def record(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    records: Sequence[Mapping[str, Any]],
) -> int:
    """``store`` of one submission in the caller's own transaction (all or none)."""
    (answer,) = await store(session, [prepare(principal, agent_id, records)])
    if isinstance(answer, Exception):
        raise answer
    return answer


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
