"""``INSERT ... ON CONFLICT DO NOTHING`` for both SQLite and PostgreSQL.

Get-or-create and idempotent writes without a savepoint or a retry loop: the database decides
who wins a race, and the loser simply inserts nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


async def insert_ignore(session: AsyncSession, table: Table, rows: list[dict[str, Any]]) -> int:
    """Insert the rows that clash with no unique constraint; return how many went in."""
    if not rows:
        return 0
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    result = await session.execute(insert(table).values(rows).on_conflict_do_nothing())
    return max(result.rowcount, 0)  # type: ignore[attr-defined]
