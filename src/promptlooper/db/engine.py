"""Async engine and session factory built from Settings.

SQLite, the embedded default, runs in WAL mode: readers never wait for the one writer, and
writers wait for each other (``busy_timeout``). For writers to wait rather than fail, each
transaction says at ``BEGIN`` whether it may write. A deferred transaction that has read and
then writes after another writer committed cannot wait for anything: SQLite refuses it at once
with "database is locked". So SQLAlchemy, not the driver, begins every transaction (the
driver's own ``BEGIN`` is off), and it begins ``BEGIN IMMEDIATE``, taking the write lock (or
queueing for it) first, unless the engine is ``read_only``: reads begin deferred and run
beside the writer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Connection, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.ext.asyncio import create_async_engine as _create_async_engine

from promptlooper.settings import Settings

BUSY_TIMEOUT_MS = 30_000
"""How long a SQLite writer queues for the write lock before it gives up."""
_BEGIN = "sqlite_begin"


def _sqlite_connect(dbapi_connection: Any, _record: Any) -> None:
    # Foreign keys are off by default in SQLite; WAL lets readers run beside the one writer.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
    cursor.close()
    dbapi_connection.isolation_level = None  # the driver begins nothing; see _sqlite_begin


def _sqlite_begin(conn: Connection) -> None:
    conn.exec_driver_sql(f"BEGIN {conn.get_execution_options().get(_BEGIN, 'IMMEDIATE')}")


def create_engine(settings: Settings | str, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``settings`` (or an already async URL), with per-dialect tuning."""
    url = make_url(settings if isinstance(settings, str) else settings.async_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": BUSY_TIMEOUT_MS / 1000}
        engine = _create_async_engine(url, connect_args=connect_args, **kwargs)
        event.listen(engine.sync_engine, "connect", _sqlite_connect)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return _create_async_engine(url, **kwargs)


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` (sharing its pool) for transactions that only read: on SQLite they begin
    deferred and never queue behind a writer. One that writes after all may fail at once with
    "database is locked" when another writer got there first."""
    return engine.execution_options(**{_BEGIN: "DEFERRED"})


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
