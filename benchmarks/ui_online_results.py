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
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tests.web.conftest import PASSWORD, UiClient, make_user

from promptlooper import migrations
from promptlooper.api import create_app
from promptlooper.db.engine import create_engine
from promptlooper.online import service
from promptlooper.online.models import DailyTotals, ExperimentTotals, Rejection, VariantTotals
from promptlooper.online.schemas import ExperimentCreate
from promptlooper.settings import Settings
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
    url = f"sqlite+aiosqlite:///{folder / 'ui.db'}"
    engine = create_engine(url)
    await migrations.upgrade(engine)
    await engine.dispose()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        data_dir=folder / "data",
        redis_url="",
        jwt_secret="ui-online-benchmark-secret-of-enough-bytes",
        log_level="warning",
    )
    app = create_app(settings)
    statements: list[str] = []
    event.listen(
        app.state.engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: statements.append(statement),
    )
    await make_user(app.state.sessionmaker, "bench", admin=True)
    await seed(app.state.sessionmaker, events)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        await UiClient(http).login("bench", PASSWORD)
        path = f"/ui/online/{KEY}"
        first = await http.get(path)  # warm: templates compiled, SciPy loaded
        assert first.status_code == 200, first.text[:500]
        times = []
        for _ in range(repeats):
            statements.clear()
            began = time.perf_counter()
            response = await http.get(path)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.text[:500]
        assert f"{events // 4 // len(ARMS):,}" in response.text  # the exposed sessions shown
    await app.state.event_bus.close()
    await app.state.engine.dispose()
    return statistics.median(times), len(response.content), len(statements)


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
