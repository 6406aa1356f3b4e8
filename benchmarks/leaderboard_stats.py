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
without; and the median of the timed share of each request. Each in wall time and in CPU
time (the process's, all its threads: the database's too; inside a request, the event loop
thread's): on a machine shared with other work, wall time mostly measures the neighbours,
while CPU time is this process's own work.

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


Clock = tuple[float, float]
"""Wall and CPU seconds."""


def _timed(function: Callable[..., Any], spent: list[list[float]]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        began, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            spent[-1][0] += time.perf_counter() - began
            spent[-1][1] += time.thread_time() - cpu

    return wrapper


def _medians(pairs: list[Clock]) -> Clock:
    return statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)


async def measure(configs: int, rows: int, repeats: int, folder: Path) -> dict[str, Clock]:
    originals = summary._uncertainty, summary.compare_with_leader
    spent: list[list[float]] = []
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

        async def request(functions: tuple[Callable[..., Any], Callable[..., Any]]) -> Clock:
            summary._uncertainty, summary.compare_with_leader = functions
            spent.append([0.0, 0.0])
            began, cpu = time.perf_counter(), time.process_time()
            response = await http.get(path, headers=headers)
            elapsed = time.perf_counter() - began, time.process_time() - cpu
            assert response.status_code == 200, response.text[:300]
            return elapsed

        for functions in (timed, bare):  # warm-up: imports, compiled statements
            await request(functions)
        spent.clear()
        with_stats: list[Clock] = []
        without: list[Clock] = []
        inside: list[Clock] = []
        try:
            for index in range(repeats):
                if index % 2:  # which goes first alternates: neither pays for the other
                    without.append(await request(bare))
                with_stats.append(await request(timed))
                inside.append((spent[-1][0], spent[-1][1]))
                if not index % 2:
                    without.append(await request(bare))
        finally:
            summary._uncertainty, summary.compare_with_leader = originals
    pairs = list(zip(with_stats, without, strict=True))
    shares = [(i[0] / w[0], i[1] / w[1]) for i, w in zip(inside, with_stats, strict=True)]
    return {
        "added": _medians([(w[0] - o[0], w[1] - o[1]) for w, o in pairs]),
        "with": _medians(with_stats),
        "without": _medians(without),
        "inside": _medians(inside),
        "share": _medians(shares),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=12)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=41)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        found = asyncio.run(measure(args.configs, args.rows, args.repeats, Path(folder)))
    runs = args.configs * args.rows
    print(f"leaderboard of {args.configs} configs × {args.rows} rows ({runs:,} runs), SQLite")
    print("| request | wall ms | CPU ms |")
    print("| --- | --- | --- |")
    for label, key in (
        ("with statistics", "with"),
        ("without statistics", "without"),
        ("the statistics alone (timed inside)", "inside"),
        ("added per request (median of paired differences)", "added"),
    ):
        wall, cpu = found[key]
        print(f"| {label} | {wall * 1000:.2f} | {cpu * 1000:.2f} |")
    for index, clock in enumerate(("wall", "CPU")):
        added = found["added"][index] / found["without"][index]
        print(
            f"{clock}: added {added:+.1%} of the request without (target under "
            f"{TARGET_SHARE:.0%}); the statistics' share of a request "
            f"{found['share'][index]:.1%}"
        )


if __name__ == "__main__":
    main()
