"""Server-side render time, size and SQL statements of the sweeps pages at scale.

A fresh SQLite database gets a finished experiment of 1,000 configs (one dataset row each,
two scorers) and a second experiment whose run answered 20 kB of text. The leaderboard page
(first page of 50 configs) and that run's page are requested in process through the ASGI
app, as a logged-in user, ``--repeats`` times each: the median time, the HTML size and the
statements each request sent to the database are printed.

    .venv/bin/python -m benchmarks.ui_pages [--configs 1000] [--repeats 15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import httpx
from sqlalchemy import event
from tests.web.conftest import PASSWORD, UiClient, make_user
from tests.web.seeding import seed_experiment

from promptlooper import migrations
from promptlooper.api import create_app
from promptlooper.db.engine import create_engine
from promptlooper.settings import Settings

TARGET_MS = 50.0
TARGET_BYTES = 200_000
RESPONSE = ("The quick brown fox jumps over the lazy dog. " * 460)[:20_000]


async def measure(configs: int, repeats: int, folder: Path) -> list[tuple[str, float, int, int]]:
    url = f"sqlite+aiosqlite:///{folder / 'ui.db'}"
    engine = create_engine(url)
    await migrations.upgrade(engine)
    await engine.dispose()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        data_dir=folder / "data",
        redis_url="",
        jwt_secret="ui-pages-benchmark-secret-of-enough-bytes",
        log_level="warning",
    )
    app = create_app(settings)
    statements: list[str] = []
    event.listen(
        app.state.engine.sync_engine,
        "before_cursor_execute",
        lambda conn, cursor, statement, *args: statements.append(statement),
    )
    await make_user(app.state.sessionmaker, "bench")
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    results = []
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        ui = UiClient(http)
        await ui.login("bench", PASSWORD)
        created = await ui.post("/ui/projects", {"name": "bench"})
        project_id = uuid.UUID(created.headers["location"].rsplit("/", 1)[1])
        big, _, _ = await seed_experiment(app.state.sessionmaker, project_id, configs=configs)
        _, _, runs = await seed_experiment(
            app.state.sessionmaker, project_id, configs=1, response=RESPONSE, name="long"
        )
        pages = {
            f"leaderboard ({configs:,} configs)": f"/ui/sweeps/{big}",
            "run (20 kB response)": f"/ui/runs/{runs[0]}",
        }
        for name, path in pages.items():
            await http.get(path)  # warm: templates compiled, caches filled
            times = []
            for _ in range(repeats):
                statements.clear()
                began = time.perf_counter()
                response = await http.get(path)
                times.append((time.perf_counter() - began) * 1000)
                assert response.status_code == 200, response.text[:500]
            results.append((name, statistics.median(times), len(response.content), len(statements)))
    await app.state.event_bus.close()
    await app.state.engine.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        results = asyncio.run(measure(args.configs, args.repeats, Path(folder)))
    print("| page | median ms | HTML bytes | SQL statements |")
    print("| --- | --- | --- | --- |")
    for name, ms, size, count in results:
        flags = " (over target)" if ms > TARGET_MS or size > TARGET_BYTES else ""
        print(f"| {name} | {ms:.1f}{flags} | {size:,} | {count} |")


if __name__ == "__main__":
    main()
