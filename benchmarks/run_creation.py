"""Creating a large sweep's run rows (``prepare_runs``), on SQLite and PostgreSQL.

The experiment is the one the deployed load test creates, scaled: one model × N/1,000 prompt
templates × 1,000 rows, a run per pair. Each measurement runs in a fresh process on a fresh,
migrated database, and times ``prepare_runs`` alone: wall time, the process's CPU time (the
driver's thread included) and the longest the event loop went without running a 5 ms ticker,
which is how long a server doing this would keep every other request waiting.

With ``--before SRC`` (the ``src`` folder of an earlier checkout, e.g. from ``git archive``),
each repeat measures that code and this one back to back, alternating, so both see the same
machine. Run from the repository root:

    .venv/bin/python -m benchmarks.run_creation --runs 50000 --repeats 3 --before /tmp/before/src
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.sweep_throughput import fresh_database

ROWS = 1_000
TICK = 0.005


def document(runs: int) -> dict[str, Any]:
    return {
        "name": "largest",
        "parameter_space": {
            "model": ["mock:small"],
            "prompt": [f"Prompt {i}: {{{{ input }}}}" for i in range(runs // ROWS)],
        },
        "dataset": {"rows": [{"input": f"ticket {i}", "expected": "billing"} for i in range(ROWS)]},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": {"mock": {}},
    }


async def measure(url: str, runs: int) -> dict[str, float]:
    """One ``prepare_runs`` of a new ``runs``-run experiment at ``url`` (migrated here)."""
    from promptlooper import migrations
    from promptlooper.cli.sweeps import _create
    from promptlooper.db.engine import create_engine, create_sessionmaker
    from promptlooper.settings import Settings
    from promptlooper.sweeps.execution import prepare_runs
    from promptlooper.sweeps.models import Experiment
    from promptlooper.sweeps.plan import compile_plan
    from promptlooper.sweeps.spec import parse_spec

    settings = Settings(database_url=url)
    engine = create_engine(settings.async_database_url)
    await migrations.upgrade(engine)
    experiment_id = await _create(engine, settings, parse_spec(document(runs)), "bench", None)
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        experiment = await session.get(Experiment, experiment_id)
    assert experiment is not None
    plan = compile_plan(parse_spec(experiment.spec))
    stalls: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = time.perf_counter()
            stalls.append(now - last - TICK)
            last = now

    ticking = asyncio.create_task(ticker())
    began, cpu = time.perf_counter(), time.process_time()
    pending = await prepare_runs(sessionmaker, experiment, plan)
    wall, cpu = time.perf_counter() - began, time.process_time() - cpu
    done.set()
    await ticking
    await engine.dispose()
    assert pending == runs, pending
    return {"wall_s": wall, "cpu_s": cpu, "stall_ms": max(stalls) * 1000}


def child(url: str, runs: int, src: str) -> dict[str, float]:
    """``measure`` in a fresh process, importing ``promptlooper`` from ``src``."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.getcwd()])}
    finished = subprocess.run(
        [sys.executable, "-m", "benchmarks.run_creation", "--child", url, "--runs", str(runs)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(finished.stdout.splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50_000, help="a multiple of 1,000")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--before", help="the src folder of the code to compare with")
    parser.add_argument("--child", metavar="DATABASE_URL", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(asyncio.run(measure(args.child, args.runs))))
        return
    here = os.path.join(os.getcwd(), "src")
    variants = {"before": args.before, "now": here} if args.before else {"now": here}
    results: dict[tuple[str, str], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for _ in range(args.repeats):
            for kind in args.databases.split(","):
                for variant, src in variants.items():
                    url, drop = fresh_database(kind, Path(folder))
                    try:
                        found = child(url, args.runs, src)
                    finally:
                        drop()
                    results.setdefault((kind, variant), []).append(found)
                    print(kind, variant, found, file=sys.stderr)
    print(f"{args.runs:,} runs, medians of {args.repeats}:")
    print("| database | code | wall s | CPU s | longest stall of the loop ms |")
    print("| --- | --- | --- | --- | --- |")
    for (kind, variant), found in results.items():
        wall, cpu, stall = (
            statistics.median(f[key] for f in found) for key in ("wall_s", "cpu_s", "stall_ms")
        )
        print(f"| {kind} | {variant} | {wall:.2f} | {cpu:.2f} | {stall:.0f} |")
    if args.before:
        for kind in args.databases.split(","):
            before, now = (
                statistics.median(f["wall_s"] for f in results[kind, v]) for v in variants
            )
            print(f"{kind}: now / before wall time = {now / before:.2f}")


if __name__ == "__main__":
    main()
