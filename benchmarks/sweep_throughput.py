"""Sweep throughput: whole-process `promptlooper sweep run` against an OpenAI-compatible fake.

Scenario: a fake server on 127.0.0.1 answers every chat completion after a fixed 50 ms; the
sweep is 3 prompt templates × 2 models × 2 temperatures × 50 rows = 600 calls through the
`openai` adapter. For each database and scenario the CLI runs in a fresh process and we record
its wall time, CPU time (user + system) and peak RSS from wait4(), repeating and quoting
medians. Run from the repository root:

    .venv/bin/python -m benchmarks.sweep_throughput [--db sqlite postgresql] [--repeats 3]
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
import uuid
from pathlib import Path

import yaml

from benchmarks.server import ROOT

PG_ADMIN = os.environ.get("TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")


def sweep_document(base_url: str, rows: int) -> dict:
    return {
        "name": "throughput",
        "parameter_space": {
            "model": ["openai:small", "openai:large"],
            "temperature": [0.0, 0.7],
            "prompt": [
                "Classify this ticket: {{ input }}",
                "One word, please. Ticket: {{ input }}",
                "You triage tickets. Category of: {{ input }}",
            ],
        },
        "dataset": {
            "rows": [
                {"input": f"ticket number {i} about billing", "expected": "answer"}
                for i in range(rows)
            ]
        },
        "scorers": [{"name": "has_answer", "type": "icontains", "weight": 1}],
        "providers": {"openai": {"base_url": base_url, "max_retries": 6, "timeout": 30}},
    }


def start_server(port: int, rate_429: float) -> subprocess.Popen:
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.fakes.openai_server",
            "--port",
            str(port),
            "--latency-ms",
            "50",
            "--rate-429",
            str(rate_429),
            "--retry-after",
            "0.1",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None
    json.loads(server.stdout.readline())  # {"url": ...} once it listens
    return server


def measure(args: list[str], env: dict[str, str]) -> dict[str, float]:
    started = time.perf_counter()
    process = subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    stderr = process.stderr.read() if process.stderr else ""
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep failed: {stderr}")
    failed = 0
    for line in stderr.splitlines():
        if " runs in " in line:
            failed = int(line.split(" failed")[0].rsplit(", ", 1)[1])
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
        "failed": failed,
    }


async def _pg(statement: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


def fresh_database(kind: str, folder: Path) -> tuple[str, callable]:
    if kind == "sqlite":
        return f"sqlite:///{folder / f'{uuid.uuid4().hex}.db'}", lambda: None
    name = f"pl_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    base = PG_ADMIN.rsplit("/", 1)[0]
    return f"{base}/{name}", lambda: asyncio.run(_pg(f'DROP DATABASE "{name}" WITH (FORCE)'))


def scenario_runs(kind: str, url: str, folder: Path, repeats: int, rows: int) -> dict:
    cli = [sys.executable, "-m", "promptlooper"]
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(sweep_document(url, rows)))
    double = folder / "double.yaml"
    double.write_text(yaml.safe_dump(sweep_document(url, 2 * rows)))
    results: dict[str, list[dict]] = {}
    for _ in range(repeats):
        database, drop = fresh_database(kind, folder)
        env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": str(folder / "data")}
        env.pop("REDIS_URL", None)
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        for name, extra in (("c16", ["--concurrency", "16"]), ("c64", ["--concurrency", "64"])):
            subprocess.run(
                [*cli, "cache", "clear", "--all"], env=env, check=True, capture_output=True
            )
            results.setdefault(name, []).append(
                measure([*cli, "sweep", "run", str(sweep), *extra], env)
            )
        results.setdefault("cached", []).append(
            measure([*cli, "sweep", "run", str(sweep), "--concurrency", "64"], env)
        )
        # Twice the rows: the CPU difference is what each extra result costs, start-up aside.
        subprocess.run([*cli, "cache", "clear", "--all"], env=env, check=True, capture_output=True)
        results.setdefault("c64, 2x rows", []).append(
            measure([*cli, "sweep", "run", str(double), "--concurrency", "64"], env)
        )
        drop()
    return results


def flaky_runs(kind: str, url: str, folder: Path, repeats: int, rows: int) -> list[dict]:
    cli = [sys.executable, "-m", "promptlooper"]
    sweep = folder / "flaky.yaml"
    sweep.write_text(yaml.safe_dump(sweep_document(url, rows)))
    out = []
    for _ in range(repeats):
        database, drop = fresh_database(kind, folder)
        env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": str(folder / "data")}
        env.pop("REDIS_URL", None)
        subprocess.run([*cli, "db", "upgrade"], env=env, check=True, capture_output=True)
        out.append(measure([*cli, "sweep", "run", str(sweep), "--concurrency", "16"], env))
        drop()
    return out


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rows", type=int, default=50)
    args = parser.parse_args()
    calls = 12 * args.rows
    # An installed package comes with its modules compiled; an editable checkout compiles them
    # on first use, unless PYTHONDONTWRITEBYTECODE is set (it is on some CI machines), in which
    # case every process would recompile them and measure the compiler.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(ROOT / "src")], check=True)

    steady = start_server(18801, 0.0)
    flaky = start_server(18802, 0.05)
    try:
        print(f"{calls} calls, 50 ms per call; medians of {args.repeats} runs\n")
        print("| database | scenario | wall s | CPU ms/result | peak RSS MB | failed runs |")
        print("| --- | --- | --- | --- | --- | --- |")
        for kind in args.db:
            with tempfile.TemporaryDirectory() as tmp:
                folder = Path(tmp)
                results = scenario_runs(
                    kind, "http://127.0.0.1:18801/v1", folder, args.repeats, args.rows
                )
                results["c16, 5% 429"] = flaky_runs(
                    kind, "http://127.0.0.1:18802/v1", folder, args.repeats, args.rows
                )
            for name, rows in results.items():
                n = 2 * calls if name.endswith("2x rows") else calls
                print(
                    f"| {kind} | {name} | {median(rows, 'wall'):.2f} | "
                    f"{1000 * median(rows, 'cpu') / n:.2f} | {median(rows, 'rss_mb'):.0f} | "
                    f"{max(r['failed'] for r in rows)} |"
                )
            extra = median(results["c64, 2x rows"], "cpu") - median(results["c64"], "cpu")
            print(f"| {kind} | marginal CPU per result (c64) | | {1000 * extra / calls:.2f} | | |")
            slow = median(results["c16, 5% 429"], "wall") / median(results["c16"], "wall") - 1
            print(f"| {kind} | 429 slowdown vs c16 | {100 * slow:+.0f} % | | | |")
        print(f"\nideal wall: {calls * 0.05 / 16:.2f} s at 16, {calls * 0.05 / 64:.2f} s at 64")
    finally:
        steady.terminate()
        flaky.terminate()


if __name__ == "__main__":
    main()
