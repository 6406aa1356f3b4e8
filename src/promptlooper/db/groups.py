"""The first few rows of each group in one statement (a window function), so a page that shows
"the latest three sweeps of each project" sends one query however many projects it lists."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute, aliased

T = TypeVar("T")


async def first_per_group(
    session: AsyncSession,
    entity: type[T],
    group: InstrumentedAttribute[Any],
    keys: Collection[Any],
    order_by: Sequence[ColumnElement[Any]],
    limit: int,
) -> tuple[dict[Any, list[T]], dict[Any, int]]:
    """The first ``limit`` rows of ``entity`` in ``order_by`` order for each of ``keys`` of its
    ``group`` column, and how many rows each group has in all (groups with none are absent)."""
    if not keys:
        return {}, {}
    ranked = (
        select(
            entity,
            func.row_number().over(partition_by=group, order_by=order_by).label("rank"),
            func.count().over(partition_by=group).label("total"),
        )
        .where(group.in_(set(keys)))
        .subquery()
    )
    row = aliased(entity, ranked)
    query = (
        select(row, ranked.c.total)
        .where(ranked.c.rank <= limit)
        .order_by(ranked.c[group.key], ranked.c.rank)
    )
    rows: dict[Any, list[T]] = defaultdict(list)
    totals: dict[Any, int] = {}
    for found, total in await session.execute(query):
        key = getattr(found, group.key)
        rows[key].append(found)
        totals[key] = int(total)
    return dict(rows), totals
