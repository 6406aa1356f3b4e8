"""Shared fixtures: SQLite and PostgreSQL databases, real Redis, the app and an HTTP client.

Every test that asks for ``db_url`` (directly or through ``app``/``client``/``sessionmaker``)
runs twice, once per backend. Each backend gets a fresh, migrated database for the test run,
and every table is emptied after each test. With ``CI`` set, an unreachable PostgreSQL or Redis
fails the run instead of skipping.
"""

from __future__ import annotations

import asyncio
import os
import socket
import threading
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from argon2 import PasswordHasher, profiles
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper import migrations
from promptlooper.api import create_app
from promptlooper.auth import passwords
from promptlooper.db.engine import create_engine
from promptlooper.settings import Settings

PG_URL = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
TEST_JWT_SECRET = "test-jwt-secret-not-for-production"
BOOTSTRAP_KEY = "test-bootstrap-admin-key"
BACKENDS = ["sqlite", "postgresql"]


def service_unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is unreachable: {exc}"
    if os.environ.get("CI"):
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def _async(url: str) -> str:
    return Settings(_env_file=None, database_url=url).async_database_url  # type: ignore[call-arg]


async def _create_pg_database() -> str:
    """A new, empty PostgreSQL database; returns its async URL."""
    import asyncpg

    name = f"promptlooper_test_{uuid.uuid4().hex[:12]}"
    url = make_url(_async(PG_URL))
    try:
        conn = await asyncpg.connect(
            host=url.host, port=url.port or 5432, user=url.username, database=url.database
        )
    except (OSError, asyncpg.PostgresError) as exc:
        service_unavailable("PostgreSQL", exc)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return url.set(database=name).render_as_string(hide_password=False)


async def _drop_pg_database(async_url: str) -> None:
    import asyncpg

    url = make_url(_async(PG_URL))
    conn = await asyncpg.connect(
        host=url.host, port=url.port or 5432, user=url.username, database=url.database
    )
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(async_url).database}" WITH (FORCE)')
    finally:
        await conn.close()


async def fresh_database(backend: str, tmp_dir: Path) -> str:
    """An empty database of ``backend`` (no schema); returns its async URL."""
    if backend == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_dir / f'{uuid.uuid4().hex}.db'}"
    return await _create_pg_database()


async def drop_database(url: str) -> None:
    if url.startswith("postgresql"):
        await _drop_pg_database(url)


async def engine_at(backend: str, tmp_dir: Path, revision: str) -> AsyncIterator[AsyncEngine]:
    """A new database of ``backend`` with the schema at ``revision``, for a migration's test
    to fill as that revision left it; dropped afterwards."""
    url = await fresh_database(backend, tmp_dir)
    engine = create_engine(url)
    await migrations.upgrade(engine, revision)
    yield engine
    await engine.dispose()
    await drop_database(url)


def old_table(name: str, *columns: str) -> sa.TableClause:
    """A table as a migration's test fills it at an earlier revision: only the columns it
    had then, since the models describe the latest."""
    return sa.table(name, *(sa.column(c) for c in columns))


def raw_event(
    key: str, session_id: str, kind: str, at: datetime, value: float | None = None
) -> dict[str, Any]:
    """One stored browser event, as a migration's test inserts it into ``online_events`` at
    an earlier revision (the columns that table has had from the start)."""
    return {
        "experiment_key": key,
        "variant_key": "a",
        "session_id": session_id,
        "path": "/",
        "event_type": kind,
        "event_id": None,
        "value": value,
        "metadata": None,
        "created_at": at,
    }


CHEAP_HASHER = PasswordHasher.from_parameters(profiles.CHEAPEST)


@pytest.fixture(scope="session", autouse=True)
def production_hasher() -> Iterator[Callable[[], PasswordHasher]]:
    """Argon2id at its cheapest in this process, for the run; the value is the hasher the
    product uses. Most tests make a user, and at the product's cost (64 MiB, three passes)
    each password hashed or checked took more CPU than the rest of a typical test. The
    product's parameters are asserted in ``tests/auth``, and servers started as processes
    (``tests/e2e``) hash at full cost."""
    product = passwords._hasher
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(passwords, "_hasher", lambda: CHEAP_HASHER)
        yield product


@pytest.fixture(scope="session")
async def _databases(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, str]]:
    """Lazily created, migrated test databases, one per backend, dropped at the end."""
    created: dict[str, str] = {}
    yield created
    for url in created.values():
        await drop_database(url)


@pytest.fixture(scope="session")
async def _admin_engines() -> AsyncIterator[dict[str, AsyncEngine]]:
    """One engine per backend for arranging and cleaning; disposed at the end of the run."""
    engines: dict[str, AsyncEngine] = {}
    yield engines
    for engine in engines.values():
        await engine.dispose()


@pytest.fixture(params=BACKENDS)
async def db_url(
    request: pytest.FixtureRequest,
    _databases: dict[str, str],
    _admin_engines: dict[str, AsyncEngine],
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[str]:
    """The URL of a migrated database of each backend; emptied after the test."""
    backend: str = request.param
    if backend not in _databases:
        url = await fresh_database(backend, tmp_path_factory.mktemp("sqlite"))
        engine = create_engine(url)
        await migrations.upgrade(engine)
        _databases[backend] = url
        _admin_engines[backend] = engine
    yield _databases[backend]
    await truncate_all(_admin_engines[backend])


async def truncate_all(engine: AsyncEngine) -> None:
    """Every table emptied (children first) and PostgreSQL's sequences restarted. There, one
    script of ``DELETE`` statements in one round trip: a test leaves a few rows, and
    ``TRUNCATE`` of every table, which gives each table and index a new file, cost more than
    most tests' own work."""
    tables = list(reversed(migrations.target_metadata().sorted_tables))
    async with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            sequences = await conn.scalars(
                text("SELECT sequence_name FROM information_schema.sequences")
            )
            script = "; ".join(
                [
                    *(f'DELETE FROM "{table.name}"' for table in tables),
                    *(f"SELECT setval('\"{name}\"', 1, false)" for name in sequences),
                ]
            )
            raw = await conn.get_raw_connection()
            await raw.driver_connection.execute(script)  # type: ignore[union-attr]
        else:
            for table in tables:
                await conn.execute(table.delete())


@pytest.fixture
def settings(db_url: str, tmp_path: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=db_url,
        data_dir=tmp_path / "data",
        redis_url="",
        jwt_secret=TEST_JWT_SECRET,
        api_key=BOOTSTRAP_KEY,
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    yield application
    await application.state.event_bus.close()
    await application.state.engine.dispose()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http


@pytest.fixture
def sessionmaker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    """Sessions on the same database as the app, for arranging and checking state."""
    return app.state.sessionmaker


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    eng = create_engine(db_url)
    yield eng
    await eng.dispose()


@pytest.fixture
def bootstrap_headers() -> dict[str, str]:
    return {"X-Api-Key": BOOTSTRAP_KEY}


@pytest.fixture
async def redis_url() -> AsyncIterator[str]:
    """A reachable Redis (database 15), flushed before and after the test."""
    from redis.asyncio import Redis

    client = Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.flushdb()
    except Exception as exc:
        await client.aclose()
        service_unavailable("Redis", exc)
    yield REDIS_URL
    await client.flushdb()
    await client.aclose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 in a thread, on the test's database."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("the test server did not start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
