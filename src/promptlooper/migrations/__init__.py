"""Alembic migrations: one linear history for SQLite and PostgreSQL, run programmatically.

The server, the CLI and the tests call ``upgrade()``/``downgrade()`` on an async engine; the
Alembic ``env.py`` then migrates over that engine's connection.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from promptlooper.errors import Invalid

if TYPE_CHECKING:  # alembic is imported where it is used: most commands never migrate
    from alembic.config import Config
    from sqlalchemy import MetaData
    from sqlalchemy.engine import Connection
    from sqlalchemy.ext.asyncio import AsyncEngine

HERE = Path(__file__).parent
HEAD = "0023"
"""The newest revision. Kept here so that checking a database needs no Alembic import;
``tests/db/test_migrations.py`` fails if it falls behind the history."""


def target_metadata() -> MetaData:
    """The metadata of every table, with each domain's models imported so they register."""
    from promptlooper.auth import models as _auth_models  # noqa: F401
    from promptlooper.db.base import Base
    from promptlooper.online import models as _online_models  # noqa: F401
    from promptlooper.projects import models as _project_models  # noqa: F401
    from promptlooper.sweeps import models as _sweep_models  # noqa: F401
    from promptlooper.sweeps.credentials import models as _credential_models  # noqa: F401
    from promptlooper.training import models as _training_models  # noqa: F401
    from promptlooper.variants import models as _variant_models  # noqa: F401

    return Base.metadata


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    from alembic import command

    await _migrate(engine, lambda sync: command.upgrade(alembic_config(sync), revision))


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    from alembic import command

    await _migrate(engine, lambda sync: command.downgrade(alembic_config(sync), revision))


async def _migrate(engine: AsyncEngine, step: Callable[[Connection], None]) -> None:
    """Run one Alembic command; a revision that does not exist is the caller's mistake
    (``Invalid``), not a crash."""
    from alembic.util import CommandError

    try:
        async with engine.begin() as conn:
            await conn.run_sync(step)
    except CommandError as exc:
        raise Invalid(f"{exc} (revisions run from base to {HEAD})") from exc


async def is_empty(engine: AsyncEngine) -> bool:
    """Whether the database holds none of our tables: new, not merely unmigrated. An empty
    ``alembic_version`` is left behind by an upgrade refused on SQLite, whose DDL is not
    transactional."""
    from sqlalchemy import inspect

    async with engine.connect() as conn:
        names = await conn.run_sync(lambda sync: inspect(sync).get_table_names())
    return set(names) <= {"alembic_version"}


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's revision (None for an empty database), read without Alembic."""
    from sqlalchemy import inspect, text

    async with engine.connect() as conn:
        if not await conn.run_sync(lambda sync: inspect(sync).has_table("alembic_version")):
            return None
        return await conn.scalar(text("SELECT version_num FROM alembic_version"))
