"""Alembic environment: migrates over the connection handed in by ``promptlooper.migrations``.

Run through ``promptlooper db upgrade`` (or the ``alembic`` command with ``alembic.ini`` at the
repository root, which reads ``DATABASE_URL`` like the server does).
"""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection

from promptlooper.migrations import target_metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_standalone() -> None:
    from promptlooper.db.engine import create_engine
    from promptlooper.settings import Settings

    engine = create_engine(Settings())
    try:
        async with engine.begin() as conn:
            await conn.run_sync(_run)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")

connection = context.config.attributes.get("connection")
if connection is None:
    asyncio.run(_run_standalone())
else:
    _run(connection)
