"""``INSERT ... ON CONFLICT`` for both SQLite and PostgreSQL.

Get-or-create, idempotent writes and running counters without a savepoint or a retry loop:
the database decides who wins a race, and the loser inserts nothing or adds to the winner.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from functools import cache
from typing import Any

from sqlalchemy import Insert, Row, Table, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession


def _insert(dialect: str, table: Table, names: tuple[str, ...]) -> Insert:
    """``INSERT`` of the named columns. On PostgreSQL the rows travel as one array per column
    (``INSERT ... SELECT * FROM unnest(...)``): one short statement, planned once, whatever the
    number of rows, instead of a statement with a placeholder per value. That needs every
    column left out to be filled by the database, not by a Python-side default.

    Each dialect's module loads when first used: PostgreSQL's takes ~35 ms to import, and a
    SQLite process never needs it."""
    statement: Insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert(table)
    if dialect != "postgresql" or any(
        c.default is not None for c in table.c if c.name not in names
    ):
        return statement
    from sqlalchemy.dialects.postgresql import ARRAY

    arrays = [bindparam(name, type_=ARRAY(table.c[name].type)) for name in names]
    rows = func.unnest(*arrays).table_valued(*names).render_derived()
    return statement.from_select(names, select(*(rows.c[name] for name in names)))


@cache
def _insert_ignore(
    dialect: str, table: Table, names: tuple[str, ...], returning: tuple[str, ...]
) -> Insert:
    statement = _insert(dialect, table, names).on_conflict_do_nothing()
    return statement.returning(*(table.c[c] for c in returning)) if returning else statement


@cache
def _insert_or_add(
    dialect: str, table: Table, names: tuple[str, ...], keys: tuple[str, ...],
    returning: tuple[str, ...],
) -> Insert:  # fmt: skip
    statement = _insert(dialect, table, names)
    statement = statement.on_conflict_do_update(
        index_elements=list(keys),
        set_={n: table.c[n] + statement.excluded[n] for n in names if n not in keys},
    )
    return statement.returning(*(table.c[c] for c in returning)) if returning else statement


async def _execute(
    executor: AsyncSession | AsyncConnection,
    statement: Insert,
    rows: list[dict[str, Any]],
    returning: Sequence[str],
) -> list[Row[Any]]:
    if statement.select is not None:  # the rows as arrays
        columns = {name: [row[name] for row in rows] for name in rows[0]}
        result = await executor.execute(statement, columns)
    else:
        result = await executor.execute(statement, rows)
    return list(result.all()) if returning else []


def _dialect(executor: AsyncSession | AsyncConnection) -> str:
    bind = executor if isinstance(executor, AsyncConnection) else executor.get_bind()
    return bind.dialect.name


async def insert_ignore(
    executor: AsyncSession | AsyncConnection,
    table: Table,
    rows: list[dict[str, Any]],
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert the rows that clash with no unique constraint; the others are skipped.

    One statement, compiled once per table and shape, whatever the number of rows. With
    ``returning``, those columns of the rows actually inserted come back.
    """
    if not rows:
        return []
    statement = _insert_ignore(_dialect(executor), table, tuple(rows[0]), tuple(returning))
    return await _execute(executor, statement, rows, returning)


async def insert_or_add(
    executor: AsyncSession | AsyncConnection,
    table: Table,
    keys: Sequence[str],
    rows: list[dict[str, Any]],
    returning: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert each row, or add its other columns to those of the row already under its
    ``keys``: running counters that concurrent writers update without losing an increment.

    With ``returning``, each row's columns after the write come back (not in input order).
    ``rows`` must not repeat a key: one statement may not update a row twice.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    statement = _insert_or_add(_dialect(executor), table, names, tuple(keys), tuple(returning))
    return await _execute(executor, statement, rows, returning)
