"""Revision 0022 leaves a bandit's weights in the weight history and drops the rows stops and
resumes added: a stopped arm's units count in their own arm now, so a stop changes no split
the SRM check expects."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper import migrations
from tests.conftest import BACKENDS, engine_at, old_table

CHANGES = old_table(
    "online_weight_changes", "id", "experiment_key", "weights", "exposed", "reason", "created_at"
)


@pytest.fixture(params=BACKENDS)
async def engine_at_0021(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    async for engine in engine_at(request.param, tmp_path, "0021"):
        yield engine


async def test_revision_0022_keeps_only_the_bandits_weights(engine_at_0021: AsyncEngine):
    engine = engine_at_0021
    at = datetime(2026, 12, 1, tzinfo=UTC)
    rows = [
        ("bandit", {"control": 0.3, "b": 0.7}, 100),
        ("stopped", {"control": 1.0, "b": 0.0}, 150),
        ("resumed", {"control": 0.3, "b": 0.7}, 180),
        ("bandit", {"control": 0.2, "b": 0.8}, 200),
    ]
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(CHANGES).values(
                id=sa.bindparam("id", type_=sa.Uuid()),
                weights=sa.bindparam("weights", type_=sa.JSON()),
            ),
            [
                {"id": uuid.uuid4(), "experiment_key": "k", "weights": weights,
                 "exposed": exposed, "reason": reason, "created_at": at}
                for reason, weights, exposed in rows
            ],
        )  # fmt: skip

    await migrations.upgrade(engine, "0022")

    async with engine.connect() as conn:
        found = await conn.execute(
            sa.text("SELECT reason, exposed FROM online_weight_changes ORDER BY exposed")
        )
        assert found.all() == [("bandit", 100), ("bandit", 200)]
