"""Server-side render time, size and SQL statements of an online experiment's results page at
ten million events.

A fresh SQLite database gets a running two-arm experiment and the running totals that ten
million ingested events leave behind (sessions of four events: impression, click, form start,
then a submit or a conversion with a value), written directly as ingestion's tallies would be:
the per-variant totals, the experiment's totals, refused events by reason, and a year of daily
totals. The page is the same whatever the number of events, because it reads only those rows;
the benchmark shows it. ``/ui/online/{key}`` is requested in process through the ASGI app, as a
logged-in admin, ``--repeats`` times: the median time, the HTML size and the statements each
request sent to the database are printed.

    .venv/bin/python -m benchmarks.ui_online_results [--events 10000000] [--repeats 25]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from benchmarks.ui_server import bench_app
from promptlooper.online import service
from promptlooper.online.models import DailyTotals, ExperimentTotals, Rejection, VariantTotals
from promptlooper.online.schemas import ExperimentCreate
from promptlooper.variants.service import existing_variant_ids

TARGET_MS = 100.0
KEY = "results_benchmark"
DAYS = 366
ARMS = {"control": 0.20, "treatment": 0.22}
"""Each arm's conversion rate."""


async def seed(sessionmaker: async_sessionmaker[AsyncSession], events: int) -> None:
    """The experiment and what ``events`` ingested events leave in the running totals."""
    sessions_per_arm = events // 4 // len(ARMS)
    async with sessionmaker() as session:
        body = ExperimentCreate.model_validate(
            {
                "experiment_key": KEY,
                "name": "Results benchmark",
                "cookie_name": "exp_results_benchmark",
                "variants": [
                    {"variant_key": "control", "allocation": 50, "is_control": True},
                    {"variant_key": "treatment", "label": "Treatment", "allocation": 50},
                ],
            }
        )
        await service.create_experiment(session, body, existing_variant_ids)
        for variant, rate in ARMS.items():
            converting = int(sessions_per_arm * rate)
            value = 10.0 * converting  # every conversion worth 10
            session.add(
                VariantTotals(
                    experiment_key=KEY,
                    variant_key=variant,
                    impressions=sessions_per_arm,
                    cta_clicks=sessions_per_arm,
                    form_starts=sessions_per_arm,
                    form_submits=sessions_per_arm - converting,
                    conversions=converting,
                    value_total=value,
                    unique_sessions=sessions_per_arm,
                    exposed=sessions_per_arm,
                    converting=converting,
                    value_exposed=value,
                    value_squares=100.0 * converting,
                )
            )
            first = datetime.now(UTC).date() - timedelta(days=DAYS - 1)
            for day in range(DAYS):
                share = sessions_per_arm // DAYS + (day < sessions_per_arm % DAYS)
                session.add(
                    DailyTotals(
                        experiment_key=KEY,
                        variant_key=variant,
                        day=first + timedelta(days=day),
                        exposed=share,
                        converting=int(share * rate),
                    )
                )
        session.add(ExperimentTotals(experiment_key=KEY, sessions=2 * sessions_per_arm, multiple=0))
        session.add(Rejection(experiment_key=KEY, reason="bot", count=events // 100))
        await session.commit()


async def measure(events: int, repeats: int, folder: Path) -> tuple[float, int, int]:
    async with bench_app(folder, admin=True) as bench:
        await seed(bench.app.state.sessionmaker, events)
        ms, response, count = await bench.time_page(f"/ui/online/{KEY}", repeats)
        assert f"{events // 4 // len(ARMS):,}" in response.text  # the exposed sessions shown
    return ms, len(response.content), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        ms, size, count = asyncio.run(measure(args.events, args.repeats, Path(folder)))
    flag = " (over target)" if ms > TARGET_MS else ""
    print("| page | median ms | HTML bytes | SQL statements |")
    print("| --- | --- | --- | --- |")
    print(
        f"| results ({args.events:,} events, {DAYS} days) | {ms:.1f}{flag} | {size:,} | {count} |"
    )


if __name__ == "__main__":
    main()
