"""Bandit weight updates at scale: one update of a bandit's weights over totals as large as
10 million events, with a million stored sticky assignments and a long weight history beside
them.

A fresh database (SQLite or PostgreSQL) at the head revision gets a three-arm bandit whose
primary metric is a ratio (quality per call), its running totals filled as ingestion would
have kept them for ``--events`` events (a tenth of them exposures), ``--units`` stored
assignments and ``--history`` earlier weight changes. Then the update the server's upkeep
runs (``upkeep.check``: the schedule, Thompson sampling with 10,000 draws per arm, the new
weights and the history row, committed) is timed ``--repeats`` times.

    .venv/bin/python -m benchmarks.bandit_update --database sqlite --repeats 20
    .venv/bin/python -m benchmarks.bandit_update --database postgresql --repeats 20
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, update

from benchmarks.sweep_throughput import fresh_database
from promptlooper.db.engine import create_engine, create_sessionmaker
from promptlooper.migrations import upgrade
from promptlooper.online import definitions, service, upkeep
from promptlooper.online.models import MetricTotals, UnitAssignment, VariantTotals, WeightChange
from promptlooper.online.schemas import ExperimentCreate, MetricCreate

KEY = "bandit_benchmark"
ARMS = ("control", "concise", "detailed")
QUALITY = {"control": 0.70, "concise": 0.72, "detailed": 0.75}


async def _no_links(_session: object, _ids: object) -> set:
    return set()


async def prepare(url: str, events: int, units: int, history: int) -> None:
    engine = create_engine(url)
    await upgrade(engine)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        await definitions.create_metric(
            session,
            MetricCreate(
                name="quality-per-call",
                source="llm_call",
                aggregation="ratio",
                denominator="llm_call",
            ),
        )
        body = {
            "experiment_key": KEY,
            "name": "Bandit benchmark",
            "cookie_name": "exp_bandit_benchmark",
            "type": "bandit",
            "primary_metric": "quality-per-call",
            "bandit": {"every_exposures": 1, "every_seconds": 3600},
            "variants": [
                {"variant_key": arm, "allocation": a, "is_control": arm == "control"}
                for arm, a in zip(ARMS, (34, 33, 33), strict=True)
            ],
        }
        await service.create_experiment(session, ExperimentCreate(**body), _no_links)
        per_arm = events // len(ARMS)
        exposed = per_arm // 10
        calls = per_arm - exposed  # the rest are LLM calls, about 9 per unit
        for arm in ARMS:
            await session.execute(
                insert(VariantTotals).values(
                    experiment_key=KEY, variant_key=arm, impressions=exposed, cta_clicks=0,
                    form_starts=0, form_submits=0, conversions=0, value_total=0.0,
                    unique_sessions=exposed, exposed=exposed, converting=0,
                    value_exposed=0.0, value_squares=0.0,
                )
            )  # fmt: skip
            per_unit_calls = calls / exposed
            quality = QUALITY[arm] * per_unit_calls
            terms = {
                "units": exposed,
                "n": calls,
                "v": quality * exposed,
                "nn": (per_unit_calls**2 + 4) * exposed,
                "vv": (quality**2 + 2) * exposed,
                "nv": (per_unit_calls * quality + 2.5) * exposed,
            }
            await session.execute(
                insert(MetricTotals),
                [
                    {"experiment_key": KEY, "variant_key": arm, "term": f"llm_call:{t}", "value": v}
                    for t, v in terms.items()
                ],
            )
        await session.commit()
        for start in range(0, units, 50_000):
            await session.execute(
                insert(UnitAssignment),
                [
                    {"experiment_key": KEY, "unit_id": f"u{i}", "variant_key": ARMS[i % 3]}
                    for i in range(start, min(units, start + 50_000))
                ],
            )
        weights = dict.fromkeys(ARMS, 1 / 3)
        session.add_all(
            WeightChange(experiment_key=KEY, weights=weights, exposed=i, reason="bandit")
            for i in range(history)
        )
        await session.commit()
    await engine.dispose()


async def measure(url: str, repeats: int) -> list[float]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    timings = []
    for _ in range(repeats + 1):  # the first warms the pool and the imports
        async with sessionmaker() as session:  # new exposures since the last update (untimed)
            await session.execute(
                update(VariantTotals)
                .where(VariantTotals.experiment_key == KEY)
                .values(exposed=VariantTotals.exposed + 1)
            )
            await session.commit()
        started = time.perf_counter()
        async with sessionmaker() as session:
            done = await upkeep.check(session, KEY)
            await session.commit()
        timings.append(time.perf_counter() - started)
        if not done or not done[0].startswith("new weights"):
            raise RuntimeError(f"the update did not run: {done}")
    async with sessionmaker() as session:
        experiment = await service.get_experiment(session, KEY)
        print("weights now:", [round(w, 3) for w in experiment.weights or []])
    await engine.dispose()
    return timings[1:]


def _async(url: str) -> str:
    return url.replace("sqlite://", "sqlite+aiosqlite://", 1).replace(
        "postgresql://", "postgresql+asyncpg://", 1
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--units", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=1_000)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        plain, drop = fresh_database(args.database, Path(folder))
        url = _async(plain)
        try:
            started = time.perf_counter()
            asyncio.run(prepare(url, args.events, args.units, args.history))
            print(f"prepared in {time.perf_counter() - started:.1f} s")
            timings = asyncio.run(measure(url, args.repeats))
        finally:
            drop()
    ms = [t * 1000 for t in timings]
    print(
        f"{args.database}: bandit update over {args.events:,} events, {args.units:,} sticky "
        f"units, {args.history:,} earlier changes: median {statistics.median(ms):.1f} ms, "
        f"max {max(ms):.1f} ms ({args.repeats} updates)"
    )


if __name__ == "__main__":
    main()
