"""``INSERT ... ON CONFLICT DO NOTHING`` for both SQLite and PostgreSQL.

Get-or-create and idempotent writes without a savepoint or a retry loop: the database decides
who wins a race, and the loser simply inserts nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

_MAX_PARAMETERS = 30_000


async def insert_ignore(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert the rows that clash with no unique constraint; return how many went in."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    # Both databases cap the bound parameters of one statement (32,767 on PostgreSQL).
    chunk = max(1, _MAX_PARAMETERS // len(rows[0]))
    inserted = 0
    for start in range(0, len(rows), chunk):
        statement = insert(table).values(rows[start : start + chunk]).on_conflict_do_nothing()
        result = await session.execute(statement)
        inserted += max(result.rowcount, 0)  # type: ignore[attr-defined]
    return inserted
