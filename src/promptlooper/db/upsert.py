"""``INSERT ... ON CONFLICT DO NOTHING`` for both SQLite and PostgreSQL.

Get-or-create and idempotent writes without a savepoint or a retry loop: the database decides
who wins a race, and the loser simply inserts nothing.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


async def insert_ignore(
    executor: AsyncSession | AsyncConnection, table: Table, rows: list[dict[str, Any]]
) -> None:
    """Insert the rows that clash with no unique constraint; the others are skipped.

    Sent as one executemany, so the statement is compiled once whatever the number of rows.
    """
    if not rows:
        return
    bind = executor if isinstance(executor, AsyncConnection) else executor.get_bind()
    insert = postgresql.insert if bind.dialect.name == "postgresql" else sqlite.insert
    await executor.execute(insert(table).on_conflict_do_nothing(), rows)
