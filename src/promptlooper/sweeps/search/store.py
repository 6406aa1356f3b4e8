"""A racing search's eliminations in the database: written as they are decided, read by a
resumed search and by the leaderboard, the report and the web page."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.base import utcnow
from promptlooper.db.upsert import insert_ignore
from promptlooper.sweeps.models import Elimination
from promptlooper.sweeps.search.racing import Decision
from promptlooper.sweeps.summary import ExperimentSummary


async def eliminations(session: AsyncSession, experiment_id: uuid.UUID) -> list[Elimination]:
    """The experiment's eliminations in the order they were decided."""
    query = (
        select(Elimination)
        .where(Elimination.experiment_id == experiment_id)
        .order_by(
            Elimination.slice_index,
            Elimination.p_value.is_(None),  # the same on SQLite and PostgreSQL
            Elimination.p_value,
            Elimination.config_hash,
        )
    )
    return list((await session.scalars(query)).all())


async def record(
    session: AsyncSession,
    experiment_id: uuid.UUID,
    decisions: Iterable[Decision],
    slice_index: int,
) -> None:
    """Store decisions; one already stored for a config (a resumed search deciding again)
    keeps the first."""
    now = utcnow()
    rows = [
        {
            "id": uuid.uuid4(),
            "experiment_id": experiment_id,
            "config_hash": d.config_hash,
            "lost_to": d.lost_to,
            "rows": d.rows,
            "effect": d.effect,
            "p_value": d.p_value,
            "reason": d.reason,
            "slice_index": slice_index,
            "created_at": now,
        }
        for d in decisions
    ]
    if rows:
        await insert_ignore(session, Elimination.__table__, rows)  # type: ignore[arg-type]


async def eliminated(
    session: AsyncSession, experiment_id: uuid.UUID, summary: ExperimentSummary
) -> list[dict[str, Any]]:
    """The eliminations as the leaderboard, report and web page show them: each with its
    config's parameters."""
    parameters = {c.config_hash: c.parameters for c in summary.configs}
    return [
        {
            "config_hash": e.config_hash,
            "parameters": parameters.get(e.config_hash, {}),
            "lost_to": e.lost_to,
            "rows": e.rows,
            "effect": e.effect,
            "p_value": e.p_value,
            "reason": e.reason,
            "slice_index": e.slice_index,
        }
        for e in await eliminations(session, experiment_id)
    ]
