"""Revision 0023 keeps the defined metrics' terms per UTC day: everything counted before it
lands on the day it runs, so a series over time starts there with all it had gathered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper import migrations
from tests.conftest import BACKENDS, engine_at, old_table

TOTALS = old_table("online_metric_totals", "experiment_key", "variant_key", "term", "value")
DAYS = sa.table(
    "online_metric_days",
    *(sa.column(name) for name in ("experiment_key", "variant_key", "term", "value")),
    sa.column("day", sa.Date()),
)


@pytest.fixture(params=BACKENDS)
async def engine_at_0022(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[AsyncEngine]:
    async for engine in engine_at(request.param, tmp_path, "0022"):
        yield engine


async def test_revision_0023_dates_the_terms_so_far_on_its_day(engine_at_0022: AsyncEngine):
    engine = engine_at_0022
    rows = [("k", "control", "purchase:v", 12.5), ("k", "b", "purchase:vv", 40.0)]
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(TOTALS),
            [dict(zip(("experiment_key", "variant_key", "term", "value"), r, strict=True))
             for r in rows],
        )  # fmt: skip

    before = datetime.now(UTC).date()
    await migrations.upgrade(engine, "0023")
    after = datetime.now(UTC).date()

    async with engine.connect() as conn:
        found = (await conn.execute(sa.select(DAYS).order_by(DAYS.c.value))).all()
    assert [tuple(r[:4]) for r in found] == rows
    assert {r.day for r in found} <= {before, after}
    assert len({r.day for r in found}) == 1

    await migrations.downgrade(engine, "0022")
    async with engine.connect() as conn:
        tables = await conn.run_sync(lambda sync: sa.inspect(sync).get_table_names())
    assert "online_metric_days" not in tables
    assert "online_metric_totals" in tables
