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
import tempfile
import uuid
from pathlib import Path

from tests.web.seeding import seed_experiment

from benchmarks.ui_server import bench_app

TARGET_MS = 50.0
TARGET_BYTES = 200_000
RESPONSE = ("The quick brown fox jumps over the lazy dog. " * 460)[:20_000]


async def measure(configs: int, repeats: int, folder: Path) -> list[tuple[str, float, int, int]]:
    results = []
    async with bench_app(folder) as bench:
        created = await bench.ui.post("/ui/projects", {"name": "bench"})
        project_id = uuid.UUID(created.headers["location"].rsplit("/", 1)[1])
        maker = bench.app.state.sessionmaker
        big, _, _ = await seed_experiment(maker, project_id, configs=configs)
        _, _, runs = await seed_experiment(
            maker, project_id, configs=1, response=RESPONSE, name="long"
        )
        pages = {
            f"leaderboard ({configs:,} configs)": f"/ui/sweeps/{big}",
            "run (20 kB response)": f"/ui/runs/{runs[0]}",
        }
        for name, path in pages.items():
            ms, response, count = await bench.time_page(path, repeats)
            results.append((name, ms, len(response.content), count))
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
