"""What the leaderboard's statistics cost: the share of a 600-run leaderboard request spent on
intervals, paired comparisons with the leader and their adjustment.

A fresh SQLite database gets a finished experiment of 12 configs × 50 rows (600 runs, two
scorers whose scores vary from row to row: a pass/fail one and a graded one). The API's
leaderboard (``GET /api/experiments/{id}/leaderboard``) is requested in process through the
ASGI app (``ui_server.bench_app``'s, as user ``bench`` with a bearer token) ``--repeats``
times, in two ways that alternate:

- as it is, with the two functions that compute the statistics (``summary._uncertainty`` per
  config and ``summary.compare_with_leader``) wrapped in timers: their share of each request;
- with those two functions replaced by ones that do nothing: the request without statistics.

Printed: the medians of both; the median of the per-pair differences (each request with
statistics minus the one without next to it, which of the two goes first alternating:
steadier on a busy machine than the difference of two medians) as a share of the median
without; and the median of the timed share of each request.

    .venv/bin/python -m benchmarks.leaderboard_stats [--configs 12] [--rows 50] [--repeats 41]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.web.conftest import PASSWORD
from tests.web.seeding import seed_experiment

from benchmarks.ui_server import bench_app
from promptlooper.sweeps import summary

TARGET_SHARE = 0.05


def _timed(function: Callable[..., Any], spent: list[float]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            spent[-1] += time.perf_counter() - began

    return wrapper


async def measure(configs: int, rows: int, repeats: int, folder: Path) -> dict[str, float]:
    originals = summary._uncertainty, summary.compare_with_leader
    spent: list[float] = []
    timed = (_timed(originals[0], spent), _timed(originals[1], spent))
    bare = (lambda *_args: None, lambda *_args: None)
    async with bench_app(folder) as bench:
        http = bench.ui.http
        login = await http.post("/api/auth/login", json={"username": "bench", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        project = (await http.post("/api/projects", json={"name": "b"}, headers=headers)).json()
        experiment, _, _ = await seed_experiment(
            bench.app.state.sessionmaker,
            uuid.UUID(project["id"]),
            configs=configs,
            rows=rows,
            noisy=True,
        )
        path = f"/api/experiments/{experiment}/leaderboard"

        async def request(functions: tuple[Callable[..., Any], Callable[..., Any]]) -> float:
            summary._uncertainty, summary.compare_with_leader = functions
            spent.append(0.0)
            began = time.perf_counter()
            response = await http.get(path, headers=headers)
            elapsed = time.perf_counter() - began
            assert response.status_code == 200, response.text[:300]
            return elapsed

        for functions in (timed, bare):  # warm-up: imports, compiled statements
            await request(functions)
        spent.clear()
        with_stats, without, shares = [], [], []
        try:
            timed_spent: list[float] = []
            for index in range(repeats):
                if index % 2:  # which goes first alternates: neither pays for the other
                    without.append(await request(bare))
                with_stats.append(await request(timed))
                timed_spent.append(spent[-1])
                shares.append(spent[-1] / with_stats[-1])
                if not index % 2:
                    without.append(await request(bare))
        finally:
            summary._uncertainty, summary.compare_with_leader = originals
    added = [w - o for w, o in zip(with_stats, without, strict=True)]
    return {
        "added_ms": statistics.median(added) * 1000,
        "with_ms": statistics.median(with_stats) * 1000,
        "without_ms": statistics.median(without) * 1000,
        "stats_ms": statistics.median(timed_spent) * 1000,
        "share": statistics.median(shares),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=41)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        found = asyncio.run(measure(args.configs, args.rows, args.repeats, Path(folder)))
    added = found["added_ms"] / found["without_ms"]
    runs = args.configs * args.rows
    print(f"leaderboard of {args.configs} configs × {args.rows} rows ({runs:,} runs), SQLite")
    print("| request | median ms |")
    print("| --- | --- |")
    print(f"| with statistics | {found['with_ms']:.1f} |")
    print(f"| without statistics | {found['without_ms']:.1f} |")
    print(f"| the statistics alone (timed inside) | {found['stats_ms']:.2f} |")
    print(f"| added per request (median of paired differences) | {found['added_ms']:.2f} |")
    print(f"added: {added:+.1%} of the request without (target under {TARGET_SHARE:.0%})")
    print(f"statistics' share of a request (median of per-request shares): {found['share']:.1%}")


if __name__ == "__main__":
    main()
