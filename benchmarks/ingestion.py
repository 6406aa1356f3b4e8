"""Online-experiment ingestion over HTTP: events/s, latency, and nothing lost or doubled.

One server process (`promptlooper serve`, uvicorn) on a fresh PostgreSQL database with the demo
registry; a load generator in this process (aiohttp, on loopback) posts events with distinct
`event_id`s at a fixed concurrency (single events also from `loadgen.py`, a minimal
keep-alive client that leaves more of the machine to the server). Afterwards the stored rows
are counted: every acknowledged (202, accepted) event must be there exactly once. The CPU each
event cost the server, the PostgreSQL processes and the load generator (which share the
machine) is read from /proc.
Scenarios: single events on `/api/experiments/event`, and batches of 1,000 on
`/api/experiments/batch`.

    .venv/bin/python -m benchmarks.ingestion --events 10000 --concurrency 64 --repeats 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import aiohttp

from benchmarks import loadgen
from benchmarks.server import run_cli, start_server
from benchmarks.sweep_throughput import fresh_database

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130 Safari"
PORT = 8791


def event(i: int, run: str) -> dict:
    return {
        "experiment_key": "homepage_hero_test",
        "variant_key": "control" if i % 2 else "tiny_gang_social_proof",
        "session_id": f"s-{i // 3}",
        "path": "/",
        "event_name": "cta_click" if i % 3 else "impression",
        "event_id": f"{run}-{i}",
    }


async def single(base: str, total: int, concurrency: int, run: str) -> tuple[float, list[float]]:
    latencies: list[float] = []
    counter = iter(range(total))
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, headers={"User-Agent": UA}) as http:

        async def worker() -> None:
            for i in counter:
                started = time.perf_counter()
                async with http.post(f"{base}/api/experiments/event", json=event(i, run)) as r:
                    body = await r.json()
                    if r.status != 202 or not body["accepted"]:
                        raise SystemExit(f"event {i} refused: {r.status} {body}")
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies


async def single_light(
    base: str, total: int, concurrency: int, run: str
) -> tuple[float, list[float]]:
    """``single`` with the minimal load generator instead of aiohttp."""
    host, port = base.removeprefix("http://").split(":")
    connections = [await loadgen.connect(host, int(port)) for _ in range(concurrency)]
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker(connection: loadgen.Connection) -> None:
        for i in counter:
            request = loadgen.post_json("/api/experiments/event", event(i, run), UA)
            started = time.perf_counter()
            status, body = await connection.request(request)
            if status != 202 or b'"accepted":true' not in body:
                raise SystemExit(f"event {i} refused: {status} {body!r}")
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker(c) for c in connections))
    elapsed = time.perf_counter() - started
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()
    return elapsed, latencies


async def batches(base: str, total: int, concurrency: int, run: str) -> tuple[float, list[float]]:
    size = 1000
    latencies: list[float] = []
    chunks = iter(range(0, total, size))
    async with aiohttp.ClientSession(headers={"User-Agent": UA}) as http:

        async def worker() -> None:
            for start in chunks:
                payload = {"events": [event(i, run) for i in range(start, start + size)]}
                began = time.perf_counter()
                async with http.post(f"{base}/api/experiments/batch", json=payload) as r:
                    body = await r.json()
                    if r.status != 202 or body["accepted"] != size:
                        raise SystemExit(f"batch at {start} refused: {r.status}")
                latencies.append(time.perf_counter() - began)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - began, latencies


def cpu_snapshot() -> dict[int, tuple[bool, float]]:
    """Per process: whether it is PostgreSQL, and the CPU (user + system) it has used so far,
    read from /proc (Linux)."""
    snapshot = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        used = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        snapshot[int(pid)] = (command.startswith(b"postgres"), used)
    return snapshot


def cpu_used(
    before: dict[int, tuple[bool, float]], after: dict[int, tuple[bool, float]], server: int
) -> tuple[float, float]:
    """CPU the server and the PostgreSQL processes used between two snapshots (a process
    that ended in between is not counted, so PostgreSQL's figure is a lower bound)."""
    postgres = sum(
        used - before.get(pid, (True, 0.0))[1] for pid, (is_pg, used) in after.items() if is_pg
    )
    return after[server][1] - before[server][1], postgres


async def stored(database: str, run: str) -> tuple[int, int]:
    import asyncpg

    conn = await asyncpg.connect(database)
    try:
        rows = await conn.fetchval(
            "SELECT count(*) FROM online_events WHERE event_id LIKE $1", f"{run}-%"
        )
        distinct = await conn.fetchval(
            "SELECT count(DISTINCT event_id) FROM online_events WHERE event_id LIKE $1", f"{run}-%"
        )
        return rows, distinct
    finally:
        await conn.close()


async def seed(database: str) -> None:
    from promptlooper.db.engine import create_engine, create_sessionmaker
    from promptlooper.online.demo import seed_demo
    from promptlooper.settings import Settings
    from promptlooper.variants.service import existing_variant_ids

    engine = create_engine(Settings(_env_file=None, database_url=database))  # type: ignore[call-arg]
    async with create_sessionmaker(engine)() as session:
        await seed_demo(session, existing_variant_ids)
        await session.commit()
    await engine.dispose()


def serve(database: str, folder: Path) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": str(folder), "LOG_LEVEL": "warning"}
    run_cli(["db", "upgrade"], env)
    asyncio.run(seed(database))
    return start_server(env, PORT, "--no-migrate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"single": [], "single, light client": [], "batch": []}
    with tempfile.TemporaryDirectory() as folder:
        database, drop = fresh_database("postgresql", Path(folder))
        server = serve(database, Path(folder))
        base = f"http://127.0.0.1:{PORT}"
        try:
            for _ in range(args.repeats):
                for name, function, total, concurrency in (
                    ("single", single, args.events, args.concurrency),
                    ("single, light client", single_light, args.events, args.concurrency),
                    ("batch", batches, args.events * 10, 4),
                ):
                    run = uuid.uuid4().hex[:8]
                    before, client = cpu_snapshot(), time.process_time()
                    wall, latencies = asyncio.run(function(base, total, concurrency, run))
                    client = time.process_time() - client
                    server_cpu, postgres_cpu = cpu_used(before, cpu_snapshot(), server.pid)
                    rows, distinct = asyncio.run(stored(database, run))
                    latencies.sort()
                    results[name].append(
                        {
                            "rate": total / wall,
                            "p50": latencies[len(latencies) // 2] * 1000,
                            "p99": latencies[int(len(latencies) * 0.99)] * 1000,
                            "lost": total - distinct,
                            "doubled": rows - distinct,
                            "server_us": server_cpu / total * 1e6,
                            "postgres_us": postgres_cpu / total * 1e6,
                            "client_us": client / total * 1e6,
                        }
                    )
        finally:
            server.terminate()
            server.wait(10)
            drop()
    for name, runs in results.items():
        rate = statistics.median(r["rate"] for r in runs)
        p50 = statistics.median(r["p50"] for r in runs)
        p99 = statistics.median(r["p99"] for r in runs)
        lost = sum(r["lost"] for r in runs)
        doubled = sum(r["doubled"] for r in runs)
        cpu = {k: statistics.median(r[k] for r in runs) for k in runs[0] if k.endswith("_us")}
        unit = "events/s (1,000 per request)" if name == "batch" else "events/s"
        print(
            f"{name}: {rate:,.0f} {unit}; request p50 {p50:.1f} ms, p99 {p99:.1f} ms; "
            f"lost {lost}, doubled {doubled}; CPU per event: server {cpu['server_us']:.0f} µs, "
            f"PostgreSQL {cpu['postgres_us']:.0f} µs, load generator {cpu['client_us']:.0f} µs"
        )


if __name__ == "__main__":
    main()
