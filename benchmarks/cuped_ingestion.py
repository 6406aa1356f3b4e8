"""What a CUPED window costs event ingestion (PostgreSQL): ``tallies.record`` on writes of
1,000 events, time-ordered, for units that each send two purchases days before their
impression (one inside the 14-day window, one outside), the impression, and two purchases
after. The same writes go to two experiments, alternately: one whose purchases a plain mean
metric measures, one whose purchases a CUPED metric with a 14-day window measures (the waiting
events kept, read back and judged when the impression comes, and the covariates kept). Prints
the median time per event of each and their ratio.

    .venv/bin/python -m benchmarks.cuped_ingestion --units 20000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from benchmarks.sweep_throughput import fresh_database
from promptlooper import migrations
from promptlooper.db.engine import create_engine, create_sessionmaker
from promptlooper.online import tallies

START = datetime(2026, 11, 1, tzinfo=UTC)
TRACKED = frozenset({"purchase"})
WINDOWS = {"purchase": frozenset({14})}
BATCH = 1_000


def events(key: str, units: int) -> list[dict[str, Any]]:
    """Every unit's five events, in time order: the units are exposed 20 seconds apart."""
    rows = []
    for index in range(units):
        exposed = START + timedelta(days=30, seconds=20 * index)
        for kind, offset, value in (
            ("purchase", timedelta(days=-20), 12.0),
            ("purchase", timedelta(days=-3), 30.0 + index % 7),
            ("impression", timedelta(0), None),
            ("purchase", timedelta(minutes=5), 25.0 + index % 11),
            ("purchase", timedelta(days=2), 40.0),
        ):
            rows.append({"experiment_key": key, "variant_key": ("a", "b")[index % 2],
                         "session_id": f"u{index}", "path": "/", "event_type": kind,
                         "event_id": None, "value": value, "metadata": None,
                         "created_at": exposed + offset})  # fmt: skip
    rows.sort(key=lambda row: row["created_at"])
    return rows


async def run(url: str, units: int) -> dict[str, list[float]]:
    engine = create_engine(url.replace("postgresql://", "postgresql+asyncpg://", 1))
    await migrations.upgrade(engine)
    sessionmaker = create_sessionmaker(engine)
    kinds = {"plain": ({}, events("plain", units)), "cuped": (WINDOWS, events("cuped", units))}
    times: dict[str, list[float]] = {name: [] for name in kinds}
    for start in range(0, 5 * units, BATCH):
        for name, (windows, rows) in kinds.items():
            batch = [dict(row) for row in rows[start : start + BATCH]]
            async with sessionmaker() as session:
                began = time.perf_counter()
                await tallies.record(session, batch, TRACKED, windows)
                await session.commit()
                times[name].append((time.perf_counter() - began) / len(batch) * 1e6)
    await engine.dispose()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=20_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url, drop = fresh_database("postgresql", Path(folder))
        try:
            times = asyncio.run(run(url, args.units))
        finally:
            drop()
    plain, cuped = (statistics.median(times[name]) for name in ("plain", "cuped"))
    print(f"{len(times['plain'])} writes of {BATCH:,} events each, per event (median):")
    print(f"  plain mean metric: {plain:.1f} µs")
    print(f"  CUPED, 14-day window: {cuped:.1f} µs ({cuped / plain:.2f}×)")


if __name__ == "__main__":
    main()
