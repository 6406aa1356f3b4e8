"""A sweep's memory as it grows: peak RSS and wall time of `promptlooper sweep run`.

Scenario: 12 configs (2 models × 3 temperatures × 2 prompts) × N rows on the built-in `mock`
provider (no latency), one scorer, the cache off, concurrency 256, each size in a fresh
process and a fresh database; peak RSS and CPU come from `wait4()` on the process, as a user
would see them. A second scenario creates the largest size's run rows in-process, as a
server does when an experiment starts, with a ticker task on the same event loop: it reports
how long creating the rows took and the loop's longest stall meanwhile. Run from the
repository root:

    .venv/bin/python -m benchmarks.sweep_memory [--rows 50 500 5000 83334] [--db sqlite]
        [--creation-only]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.server import CLI, ROOT
from benchmarks.sweep_throughput import fresh_database

CONFIGS = 12


def sweep_document(rows: int) -> dict:
    dataset = [{"input": f"ticket {i} about billing", "expected": "billing"} for i in range(rows)]
    return {
        "name": f"memory {rows} rows",
        "parameter_space": {
            "model": ["mock:small", "mock:large"],
            "temperature": [0.0, 0.5, 1.0],
            "prompt": ["Classify: {{ input }}", "One word, please: {{ input }}"],
        },
        "dataset": {"rows": dataset},
        "scorers": [{"name": "correct", "type": "icontains", "weight": 1}],
        "providers": {"mock": {"knowledge": {"billing": "billing", "login": "account"}}},
        "concurrency": 256,
    }


def write_sweep(folder: Path, rows: int) -> Path:
    """The sweep file, its dataset in a JSONL file beside it as large datasets are kept (an
    inline YAML dataset costs the parser ~3 KB of memory a row before anything runs)."""
    document = sweep_document(rows)
    dataset = folder / f"rows-{rows}.jsonl"
    dataset.write_text("".join(json.dumps(row) + "\n" for row in document["dataset"]["rows"]))
    document["dataset"] = {"path": dataset.name}
    sweep = folder / f"sweep-{rows}.yaml"
    sweep.write_text(yaml.safe_dump(document))
    return sweep


def run_sweep(sweep: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        [*CLI, "sweep", "run", str(sweep), "--no-cache"],
        env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert process.stderr is not None
    stderr = process.stderr.read()
    _, status, usage = os.wait4(process.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep failed: {stderr[-2000:]}")
    return {
        "wall": time.perf_counter() - started,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
    }


async def create_runs(database: str, rows: int) -> tuple[float, float, int]:
    """Create a sweep's experiment, then its run rows as a starting server does, a ticker on
    the same loop; returns the seconds the rows took, the longest tick late in ms and the
    runs created."""
    from promptlooper.auth import service as auth
    from promptlooper.auth.principal import Principal
    from promptlooper.db.engine import create_engine, create_sessionmaker
    from promptlooper.projects import service as projects
    from promptlooper.settings import Settings
    from promptlooper.sweeps import service
    from promptlooper.sweeps.execution import prepare_runs
    from promptlooper.sweeps.plan import compile_plan
    from promptlooper.sweeps.providers import ProviderPolicy
    from promptlooper.sweeps.spec import parse_spec

    settings = Settings(database_url=database)
    engine = create_engine(settings)
    spec = parse_spec(sweep_document(rows))
    longest, ticking = 0.0, True

    async def ticker() -> None:
        nonlocal longest
        last = time.perf_counter()
        while ticking:
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            longest, last = max(longest, now - last - 0.005), now

    try:
        async with create_sessionmaker(engine)() as session:
            user = await auth.bootstrap_user(session)
            principal = Principal(user.id, user.username, user.is_admin, "local")
            project = await projects.get_or_create_project(session, principal, "default")
            experiment = await service.create_experiment(
                session, principal, project.id, spec,
                policy=ProviderPolicy.workstation(settings), max_runs=settings.sweep_max_runs,
            )  # fmt: skip
            await session.commit()
        plan = compile_plan(spec, max_runs=settings.sweep_max_runs)
        tick = asyncio.create_task(ticker())
        started = time.perf_counter()
        pending = await prepare_runs(create_sessionmaker(engine), experiment, plan)
        took = time.perf_counter() - started
        ticking = False
        await tick
    finally:
        await engine.dispose()
    return took, 1000 * longest, pending


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[50, 500, 5000, 83334])
    parser.add_argument("--db", default="sqlite", choices=["sqlite", "postgresql"])
    parser.add_argument(
        "--creation-only", action="store_true", help="only the run rows' creation, no sweep"
    )
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)
    print(f"{args.db}, 12 configs × N rows, mock provider, cache off, concurrency 256\n")
    print("| calls | wall s | CPU µs/result | peak RSS MB |")
    print("| --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for rows in [] if args.creation_only else args.rows:
            sweep = write_sweep(folder, rows)
            database, drop = fresh_database(args.db, folder)
            env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": str(folder / "data")}
            env.pop("REDIS_URL", None)
            try:
                subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
                result = run_sweep(sweep, env)
            finally:
                drop()
            calls = CONFIGS * rows
            print(
                f"| {calls:,} | {result['wall']:.1f} | {1e6 * result['cpu'] / calls:.0f} | "
                f"{result['rss_mb']:.0f} |",
                flush=True,
            )
        rows = max(args.rows)
        database, drop = fresh_database(args.db, folder)
        env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": str(folder / "data")}
        try:
            subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True)
            took, stall, created = asyncio.run(create_runs(database, rows))
        finally:
            drop()
        print(
            f"\ncreating {created:,} run rows: {took:.1f} s, the event loop's longest stall "
            f"{stall:.0f} ms"
        )


if __name__ == "__main__":
    main()
