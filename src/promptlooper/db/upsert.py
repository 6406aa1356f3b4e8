"""``INSERT ... ON CONFLICT`` for both SQLite and PostgreSQL.

Get-or-create, idempotent writes and running counters without a savepoint or a retry loop:
the database decides who wins a race, and the loser inserts nothing or adds to the winner.
Rows known to be new (``insert_new``) go in with PostgreSQL's ``COPY`` instead, and on SQLite
straight to the driver's ``executemany``.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

import orjson
from sqlalchemy import JSON, Insert, Row, Table, Text, bindparam, case, cast, column, func, select
from sqlalchemy import table as sql_table
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.types import TypeDecorator, TypeEngine


def _insert(dialect: str, table: Table, names: tuple[str, ...]) -> Insert:
    """``INSERT`` of the named columns. On PostgreSQL the rows travel as one JSON document
    (``INSERT ... SELECT * FROM json_to_recordset(...)``): one short statement, planned once,
    whatever the number of rows, which orjson writes and PostgreSQL unpacks, both in compiled
    code. Sent as one array per column instead, the driver checks and encodes every value in
    Python: for 1,000 events that cost 5.5 µs an event in the server and 5.2 in PostgreSQL,
    against ~1.5 and 6.6 as JSON (the server is the one process that cannot use both cores).
    Timestamps travel in ISO 8601 with their offset (a naive one is taken as UTC), UUIDs as
    text, JSON columns as nested JSON. That needs every column left out to be filled by the
    database, not by a Python-side default.

    Each dialect's module loads when first used: PostgreSQL's takes ~35 ms to import, and a
    SQLite process never needs it."""
    statement: Insert = importlib.import_module(f"sqlalchemy.dialects.{dialect}").insert(table)
    if dialect != "postgresql" or any(
        c.default is not None for c in table.c if c.name not in names
    ):
        return statement
    document = cast(bindparam("rows", type_=Text), JSON)
    columns = (column(name, table.c[name].type) for name in names)
    rows = func.json_to_recordset(document).table_valued(*columns).render_derived(with_types=True)
    return statement.from_select(names, select(*(rows.c[name] for name in names)))


@cache
def _insert_plain(dialect: str, table: Table, names: tuple[str, ...]) -> Insert:
    return _insert(dialect, table, names)


@cache
def _insert_ignore(
    dialect: str, table: Table, names: tuple[str, ...], returning: tuple[str, ...]
) -> Insert:
    statement = _insert(dialect, table, names).on_conflict_do_nothing()
    return statement.returning(*(table.c[c] for c in returning)) if returning else statement


@cache
def _insert_or_add(
    dialect: str, table: Table, names: tuple[str, ...], keys: tuple[str, ...],
    returning: tuple[str, ...], earliest: tuple[str, ...],
) -> Insert:  # fmt: skip
    statement = _insert(dialect, table, names)
    new = statement.excluded
    changes = {n: table.c[n] + new[n] for n in names if n not in keys and n not in earliest}
    # The earlier of the two, a missing one (NULL) giving way to the other.
    changes |= {
        n: case((new[n].is_(None), table.c[n]), (table.c[n] <= new[n], table.c[n]), else_=new[n])
        for n in earliest
    }
    statement = statement.on_conflict_do_update(index_elements=list(keys), set_=changes)
    return statement.returning(*(table.c[c] for c in returning)) if returning else statement


@cache
def _insert_or_set(
    dialect: str, table: Table, names: tuple[str, ...], keys: tuple[str, ...]
) -> Insert:
    statement = _insert(dialect, table, names)
    changes = {n: statement.excluded[n] for n in names if n not in keys}
    return statement.on_conflict_do_update(index_elements=list(keys), set_=changes)


UNIQUE_VIOLATION = "23505"
"""PostgreSQL's SQLSTATE for a row that clashes with a unique constraint."""

_OPTIONS = orjson.OPT_NAIVE_UTC | orjson.OPT_NON_STR_KEYS


def _document(rows: Any) -> str:
    """The rows as a JSON array of objects (or one JSON column's value). orjson writes it
    (~12 times faster than ``json`` here); an integer beyond 64 bits in a JSON column, which
    orjson refuses, sends the rows through ``json`` instead."""
    try:
        return orjson.dumps(rows, default=_json_value, option=_OPTIONS).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_json_value)


def _json_value(value: Any) -> str:
    """What the encoders do not write themselves: a UUID subclass such as the driver's own
    (ids read back), and for ``json`` any timestamp (naive ones taken as UTC, as orjson
    takes them)."""
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat()
    raise TypeError(f"cannot send {type(value).__name__} in a JSON row")


async def _execute(
    executor: AsyncSession | AsyncConnection,
    statement: Insert,
    rows: list[dict[str, Any]],
    returning: Sequence[str],
) -> list[Row[Any]]:
    if statement.select is not None:  # the rows as one JSON document
        result = await executor.execute(statement, {"rows": _document(rows)})
    else:
        result = await executor.execute(statement, rows)
    return list(result.all()) if returning else []


def _dialect(executor: AsyncSession | AsyncConnection) -> str:
    bind = executor if isinstance(executor, AsyncConnection) else executor.get_bind()
    return bind.dialect.name


async def insert_rows(
    executor: AsyncSession | AsyncConnection, table: Table, rows: list[dict[str, Any]]
) -> None:
    """Insert the rows, as one statement (compiled once per table and shape); a row that
    clashes with a unique constraint fails them all with ``IntegrityError``."""
    if rows:
        statement = _insert_plain(_dialect(executor), table, tuple(rows[0]))
        await _execute(executor, statement, rows, ())


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
    earliest: Sequence[str] = (),
) -> list[Row[Any]]:
    """Insert each row, or add its other columns to those of the row already under its
    ``keys``: running counters that concurrent writers update without losing an increment.
    The columns named in ``earliest`` (timestamps) keep the earlier of the stored and the new
    value instead, a NULL counting as unknown.

    With ``returning``, each row's columns after the write come back (not in input order).
    ``rows`` must not repeat a key: one statement may not update a row twice.
    """
    if not rows:
        return []
    names = tuple(rows[0])
    statement = _insert_or_add(
        _dialect(executor), table, names, tuple(keys), tuple(returning), tuple(earliest)
    )
    return await _execute(executor, statement, rows, returning)


async def insert_new(
    executor: AsyncSession | AsyncConnection, table: Table, rows: list[dict[str, Any]]
) -> None:
    """Insert rows that no other writer can hold yet (a new experiment's runs, say).

    On PostgreSQL they go in with ``COPY`` (asyncpg's ``copy_records_to_table``), which skips
    planning and checking an ``INSERT`` per batch: a million runs are created in well under
    the time ``INSERT ... SELECT`` takes. On SQLite they go to the driver's ``executemany``
    as plain tuples: SQLAlchemy's own builds and converts a parameter set per row in Python,
    about 40 % of the time it took to create a large sweep's runs. Either way the values are
    converted column by column, once for each run of the same object (a run's experiment,
    config and timestamp are the same objects in every row of a config); JSON columns travel
    as text that orjson writes. A column left out takes the database's default, not a
    Python-side one, and a row that clashes with a unique constraint fails the batch with
    ``IntegrityError``, as any other ``COPY`` error fails it."""
    if not rows:
        return
    bound = executor if isinstance(executor, AsyncConnection) else await executor.connection()
    if bound.dialect.name != "postgresql":
        # Named by its columns alone (a ``TableClause``), the table brings no Python-side
        # default into the statement.
        target = sql_table(table.name, *(column(name) for name in rows[0]), schema=table.schema)
        compiled = target.insert().compile(dialect=bound.dialect, column_keys=list(rows[0]))
        names = list(compiled.positiontup or ())
        await bound.exec_driver_sql(compiled.string, _records(table, rows, names, bound.dialect))
        return
    names = list(rows[0])
    connection = await bound.get_raw_connection()
    try:
        await connection.driver_connection.copy_records_to_table(
            table.name,
            records=_records(table, rows, names, None),
            columns=names,
            schema_name=table.schema,
        )
    except Exception as exc:  # the driver's own error: a clash reads as it does elsewhere
        if getattr(exc, "sqlstate", None) == UNIQUE_VIOLATION:
            raise IntegrityError(f"COPY {table.name}", None, exc) from exc
        raise


def _records(
    table: Table, rows: list[dict[str, Any]], names: list[str], dialect: Dialect | None
) -> list[tuple[Any, ...]]:
    """The rows as tuples of ``names``, converted for ``dialect``'s driver (None: for
    ``COPY``, whose codecs convert all but JSON) a column at a time."""
    columns = (
        _converted([row[name] for row in rows], _conversion(table.c[name].type, dialect))
        for name in names
    )
    return list(zip(*columns, strict=True))


def _conversion(kind: TypeEngine[Any], dialect: Dialect | None) -> Callable[[Any], Any] | None:
    if _is_json(kind):
        return _json_text
    return None if dialect is None else kind.dialect_impl(dialect).bind_processor(dialect)


def _json_text(value: Any) -> str | None:
    return None if value is None else _document(value)


def _converted(values: list[Any], convert: Callable[[Any], Any] | None) -> list[Any]:
    """``values`` through ``convert``, called once for each run of the same object."""
    if convert is None:
        return values
    converted: list[Any] = []
    last, result = object(), None  # the first value is never that object
    for value in values:
        if value is not last:
            last, result = value, convert(value)
        converted.append(result)
    return converted


def _is_json(kind: TypeEngine[Any]) -> bool:
    return isinstance(kind.impl_instance if isinstance(kind, TypeDecorator) else kind, JSON)


async def insert_or_set(
    executor: AsyncSession | AsyncConnection,
    table: Table,
    keys: Sequence[str],
    rows: list[dict[str, Any]],
) -> None:
    """Insert each row, or overwrite the other columns of the row already under its ``keys``
    (the latest picture of something wins, whoever writes it). ``rows`` must not repeat a
    key."""
    if rows:
        statement = _insert_or_set(_dialect(executor), table, tuple(rows[0]), tuple(keys))
        await _execute(executor, statement, rows, ())
