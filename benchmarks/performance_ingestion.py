"""Performance records of an experiment over agent variants, over HTTP: records/s, latency,
and nothing lost.

The ingestion benchmark (``ingestion.py``) measures browser events; an experiment whose arms
are agent variants is fed by the agent's performance log instead: each served call, with the
unit it served, is filed under the unit's arm and added to the arms' running totals for the
performance metrics. Here one server process (`promptlooper serve`) on a fresh PostgreSQL
database holds an agent with two variants, an online experiment linking its arms to them,
and three performance metrics (quality per unit, cost per call, success rate); a load generator
in this process (aiohttp, on loopback) posts records for 50,000 distinct units, singly at a
fixed concurrency and in lists of 1,000. Afterwards the stored records of the run are counted,
and the arms' call totals compared with them: every acknowledged (201) record must be stored
and counted once. CPU per record is read from /proc as in ``ingestion.py``.

    .venv/bin/python -m benchmarks.performance_ingestion --records 10000 --repeats 3

``--with-events`` posts the same numbers of browser events to the same server after each
records run (single and batched alike), so the two paths are compared in the same conditions.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

import aiohttp

from benchmarks import ingestion as events
from benchmarks.ingestion import cpu_snapshot, cpu_used
from benchmarks.server import CLI, ROOT, start_server
from benchmarks.sweep_throughput import fresh_database

PORT = 8792
UNITS = 50_000
KEY = "answerer_models"
METRICS = [
    {"name": "answer-quality", "kind": "performance", "source": "quality", "aggregation": "mean"},
    {"name": "cost-per-call", "kind": "performance", "source": "cost", "aggregation": "ratio",
     "denominator": "cost", "direction": "lower"},
    {"name": "answered", "kind": "performance", "source": "success", "aggregation": "proportion"},
]  # fmt: skip


def record(i: int, run: str) -> dict:
    rng = random.Random(i)
    return {
        "unit_id": f"{run}-u{i % UNITS}",
        "quality": round(rng.random(), 3),
        "cost": round(rng.uniform(0.0005, 0.004), 6),
        "latency_ms": round(rng.uniform(200, 1500), 1),
        "tokens_in": rng.randint(200, 900),
        "tokens_out": rng.randint(20, 200),
        "success": rng.random() > 0.02,
    }


async def single(http: aiohttp.ClientSession, url: str, total: int, concurrency: int,
                 run: str) -> tuple[float, list[float]]:  # fmt: skip
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            began = time.perf_counter()
            async with http.post(url, json=record(i, run)) as response:
                if response.status != 201:
                    raise SystemExit(f"record {i}: {response.status} {await response.text()}")
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def batches(http: aiohttp.ClientSession, url: str, total: int, concurrency: int,
                  run: str) -> tuple[float, list[float]]:  # fmt: skip
    size = 1000
    latencies: list[float] = []
    chunks = iter(range(0, total, size))

    async def worker() -> None:
        for start in chunks:
            payload = [record(i, run) for i in range(start, start + size)]
            began = time.perf_counter()
            async with http.post(url, json=payload) as response:
                body = await response.json()
                if response.status != 201 or body["recorded"] != size:
                    raise SystemExit(f"batch at {start}: {response.status} {body}")
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - began, latencies


async def setup(base: str, key: str) -> str:
    """The agent, its two variants, the metrics and the experiment; the records' URL."""
    headers = {"X-Api-Key": key}
    async with aiohttp.ClientSession(base_url=base, headers=headers) as http:

        async def post(path: str, body: dict) -> dict:
            async with http.post(path, json=body) as response:
                if response.status != 201:
                    raise SystemExit(f"{path}: {response.status} {await response.text()}")
                return await response.json()

        project = await post("/api/projects", {"name": "bench"})
        agent = await post(
            f"/api/projects/{project['id']}/agents",
            {"name": "Answerer", "model_provider": "mock", "model_name": "small"},
        )
        arms = [
            await post(f"/api/agents/{agent['id']}/variants", {"name": name, "model_name": name})
            for name in ("small", "large")
        ]
        for metric in METRICS:
            await post("/api/admin/metrics", metric)
        await post("/api/admin/experiments", {
            "experiment_key": KEY, "name": "Answerer models", "cookie_name": "exp_answerer",
            "primary_metric": "answer-quality", "guardrail_metrics": ["cost-per-call"],
            "secondary_metrics": ["answered"],
            "variants": [
                {"variant_key": "small", "allocation": 50, "is_control": True,
                 "agent_variant_id": arms[0]["id"]},
                {"variant_key": "large", "allocation": 50, "agent_variant_id": arms[1]["id"]},
            ],
        })  # fmt: skip
    return f"/api/agents/{agent['id']}/performance"


async def counted(database: str, run: str) -> tuple[int, int, float]:
    """The run's stored records, those filed under an arm, and the calls the arms' totals
    count (all runs so far)."""
    import asyncpg

    conn = await asyncpg.connect(database)
    try:
        stored = await conn.fetchval(
            "SELECT count(*) FROM performance_records WHERE unit_id LIKE $1", f"{run}-%"
        )
        filed = await conn.fetchval(
            "SELECT count(*) FROM performance_records WHERE unit_id LIKE $1 AND arm_key IS NOT"
            " NULL",
            f"{run}-%",
        )
        calls = await conn.fetchval(
            "SELECT coalesce(sum(value), 0) FROM online_metric_totals WHERE experiment_key = $1"
            " AND term = 'perf:calls:n'",
            KEY,
        )
        return stored, filed, float(calls)
    finally:
        await conn.close()


def admin_key(env: dict[str, str]) -> str:
    subprocess.run(
        [*CLI, "user", "create", "bench", "--admin", "--password-stdin"],
        env=env,
        input=b"bench-password-1\n",
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    made = subprocess.run(
        [*CLI, "apikey", "create", "--user", "bench"],
        env=env,
        check=True,
        capture_output=True,
        cwd=ROOT,
    )
    return made.stdout.decode().strip()


def measure(server: subprocess.Popen, total: int, go) -> dict:
    """Run ``go`` (a coroutine function answering its wall time and latencies) and what it
    cost: rate, latency percentiles and CPU per item."""
    before, client = cpu_snapshot(), time.process_time()
    wall, latencies = asyncio.run(go())
    client = time.process_time() - client
    server_cpu, postgres_cpu = cpu_used(before, cpu_snapshot(), server.pid)
    latencies.sort()
    return {
        "rate": total / wall,
        "p50": latencies[len(latencies) // 2] * 1000,
        "p99": latencies[int(len(latencies) * 0.99)] * 1000,
        "server_us": server_cpu / total * 1e6,
        "postgres_us": postgres_cpu / total * 1e6,
        "client_us": client / total * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--port", type=int, default=PORT)
    parser.add_argument(
        "--with-events",
        action="store_true",
        help="also post as many browser events (ingestion.py's load) to the same server, "
        "alternating with the records, to compare the two paths in the same conditions",
    )
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"single": [], "batch": []}
    if args.with_events:
        results |= {"events, single": [], "events, batch": []}
    acknowledged = 0
    with tempfile.TemporaryDirectory() as folder:
        database, drop = fresh_database("postgresql", Path(folder))
        env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": folder, "LOG_LEVEL": "warning"}
        env.pop("REDIS_URL", None)
        subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, capture_output=True, cwd=ROOT)
        if args.with_events:
            asyncio.run(events.seed(database))
        key = admin_key(env)
        server = start_server(env, args.port, "--no-migrate")
        base = f"http://127.0.0.1:{args.port}"
        try:
            url = asyncio.run(setup(base, key))
            for _ in range(args.repeats):
                for name, function, total, concurrency in (
                    ("single", single, args.records, args.concurrency),
                    ("batch", batches, args.records * 10, 4),
                ):
                    run = uuid.uuid4().hex[:8]

                    async def go(function=function, total=total, concurrency=concurrency,
                                 run=run) -> tuple[float, list[float]]:  # fmt: skip
                        connector = aiohttp.TCPConnector(limit=concurrency)
                        async with aiohttp.ClientSession(
                            base, connector=connector, headers={"X-Api-Key": key}
                        ) as http:
                            return await function(http, url, total, concurrency, run)

                    figures = measure(server, total, go)
                    acknowledged += total
                    stored, filed, calls = asyncio.run(counted(database, run))
                    results[name].append(figures | {
                        "lost": total - stored,
                        "unfiled": stored - filed,
                        "miscounted": acknowledged - calls,
                    })  # fmt: skip
                    if not args.with_events:
                        continue
                    run = uuid.uuid4().hex[:8]
                    post = events.single if name == "single" else events.batches
                    figures = measure(server, total, partial(post, base, total, concurrency, run))
                    rows, distinct = asyncio.run(events.stored(database, run))
                    results[f"events, {name}"].append(
                        figures | {"lost": total - distinct, "doubled": rows - distinct}
                    )
        finally:
            server.terminate()
            server.wait(10)
            drop()
    for name, runs in results.items():
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        what = "events" if name.startswith("events") else "records"
        unit = f"{what}/s (1,000 per request)" if name.endswith("batch") else f"{what}/s"
        checks = (
            f"lost {sum(r['lost'] for r in runs)}, doubled {sum(r['doubled'] for r in runs)}"
            if what == "events"
            else f"lost {sum(r['lost'] for r in runs)}, not filed under an arm "
            f"{sum(r['unfiled'] for r in runs)}, arms' call totals off by "
            f"{runs[-1]['miscounted']:.0f}"
        )
        print(
            f"{name}: {median['rate']:,.0f} {unit}; request p50 {median['p50']:.1f} ms, "
            f"p99 {median['p99']:.1f} ms; {checks}; CPU per item: server "
            f"{median['server_us']:.0f} µs, PostgreSQL {median['postgres_us']:.0f} µs, load "
            f"generator {median['client_us']:.0f} µs"
        )


if __name__ == "__main__":
    main()
