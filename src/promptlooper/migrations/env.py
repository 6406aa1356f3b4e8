"""Alembic environment: migrates over the connection handed in by ``promptlooper.migrations``.

Run through ``promptlooper db upgrade`` (or the ``alembic`` command with ``alembic.ini`` at the
repository root, which reads ``DATABASE_URL`` like the server does).
"""

from __future__ import annotations

import asyncio
from typing import Any

from alembic import context
from sqlalchemy.engine import Connection

from promptlooper.db.types import UTCDateTime
from promptlooper.migrations import target_metadata


def _render_item(kind: str, obj: Any, autogen_context: Any) -> str | bool:
    """Write our portable column types as plain SQLAlchemy types in new migrations, so the
    history never depends on application code."""
    if kind == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    if kind == "type" and obj.__class__.__name__ == "JSON" and obj._variant_mapping:
        autogen_context.imports.add("from sqlalchemy.dialects import postgresql")
        return 'sa.JSON().with_variant(postgresql.JSONB(), "postgresql")'
    return False


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata(),
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        render_item=_render_item,
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
