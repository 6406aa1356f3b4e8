"""The migration history builds exactly the models' schema and round-trips, on both backends."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper import migrations
from promptlooper.db.engine import create_engine
from tests.conftest import BACKENDS, drop_database, fresh_database


@pytest.fixture(params=BACKENDS)
async def empty_engine(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    url = await fresh_database(request.param, tmp_path)
    engine = create_engine(url)
    yield engine
    await engine.dispose()
    await drop_database(url)


async def _schema_diff(engine: AsyncEngine) -> list:
    async with engine.connect() as conn:
        return await conn.run_sync(
            lambda sync: compare_metadata(
                MigrationContext.configure(sync, opts={"compare_type": True}),
                migrations.target_metadata(),
            )
        )


async def _tables(engine: AsyncEngine) -> set[str]:
    async with engine.connect() as conn:
        return set(await conn.run_sync(lambda sync: inspect(sync).get_table_names()))


async def test_migrated_schema_equals_the_models(empty_engine: AsyncEngine):
    await migrations.upgrade(empty_engine)

    assert await _schema_diff(empty_engine) == []
    assert await migrations.current_revision(empty_engine) == migrations.head_revision()


def test_head_constant_matches_the_history():
    assert migrations.head_revision() == migrations.HEAD


async def test_downgrade_and_upgrade_round_trip(empty_engine: AsyncEngine):
    model_tables = {t.name for t in migrations.target_metadata().sorted_tables}
    await migrations.upgrade(empty_engine)
    assert await _tables(empty_engine) >= model_tables

    await migrations.downgrade(empty_engine, "base")
    assert await _tables(empty_engine) & model_tables == set()
    assert await migrations.current_revision(empty_engine) is None

    await migrations.upgrade(empty_engine)
    assert await _schema_diff(empty_engine) == []


async def test_every_step_downgrades_and_upgrades_again(empty_engine: AsyncEngine):
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrations.alembic_config())
    revisions = [rev.revision for rev in reversed(list(script.walk_revisions()))]
    for revision in revisions:
        await migrations.upgrade(empty_engine, revision)
        await migrations.downgrade(empty_engine, "-1")
        await migrations.upgrade(empty_engine, revision)
    assert await _schema_diff(empty_engine) == []
