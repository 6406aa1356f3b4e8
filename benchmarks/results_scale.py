"""Online results at scale: the results endpoint with millions of stored events (PostgreSQL).

A fresh database at revision 0006 (events, no running totals) gets N events made in SQL:
sessions of four events (impression, cta_click, form_start, then form_submit or, for about a
fifth of control and a quarter of treatment sessions, a conversion with a value), alternating
between the two variants of `homepage_hero_test`. Then:

1. the grouping query the results ran before the running totals (per session, then per
   variant), timed on those events with the index it had;
2. `promptlooper db upgrade`: revision 0007 fills the totals from the events (timed);
3. `GET /api/v1/experiments/results` through a `promptlooper serve` process, timed over HTTP;
   its counts are checked against the grouping query's.

    .venv/bin/python -m benchmarks.results_scale --events 10000000 --requests 20
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import asyncpg

from benchmarks.ingestion import seed
from benchmarks.server import CLI, ROOT, run_cli, start_server
from benchmarks.sweep_throughput import fresh_database

PORT = 8792
KEY = "results-scale-benchmark-key"
CHUNK = 1_000_000

GENERATE = """
INSERT INTO online_events
    (experiment_key, variant_key, session_id, path, event_type, event_id, value, created_at)
SELECT 'homepage_hero_test',
       CASE WHEN (i / 4) % 2 = 0 THEN 'control' ELSE 'tiny_gang_social_proof' END,
       's' || (i / 4), '/',
       CASE i % 4 WHEN 0 THEN 'impression' WHEN 1 THEN 'cta_click' WHEN 2 THEN 'form_start'
            ELSE CASE WHEN converts THEN 'conversion' ELSE 'form_submit' END END,
       'e' || i,
       CASE WHEN i % 4 = 3 AND converts THEN 10 + (i / 4) % 40 END,
       now()
FROM (SELECT i, abs(hashtext('s' || (i / 4))) % 100 < (20 + 5 * ((i / 4) % 2)) AS converts
      FROM generate_series($1::bigint, $2::bigint - 1) AS i) AS s
"""

GROUPED = """
SELECT variant_key, SUM(impressions), SUM(conversions), COUNT(*),
       SUM(CASE WHEN impressions > 0 AND conversions > 0 THEN 1 ELSE 0 END)
FROM (SELECT variant_key, session_id,
             SUM(CASE WHEN event_type = 'impression' THEN 1 ELSE 0 END) AS impressions,
             SUM(CASE WHEN event_type = 'conversion' THEN 1 ELSE 0 END) AS conversions
      FROM online_events WHERE experiment_key = 'homepage_hero_test'
      GROUP BY variant_key, session_id) AS per_session
GROUP BY variant_key ORDER BY variant_key
"""


async def generate(database: str, total: int) -> float:
    conn = await asyncpg.connect(database)
    began = time.perf_counter()
    try:
        for start in range(0, total, CHUNK):
            await conn.execute(GENERATE, start, min(start + CHUNK, total))
            print(f"  {min(start + CHUNK, total):,} events", flush=True)
        await conn.execute("VACUUM ANALYZE online_events")
    finally:
        await conn.close()
    return time.perf_counter() - began


async def grouped(database: str) -> tuple[float, dict[str, tuple]]:
    conn = await asyncpg.connect(database)
    try:
        began = time.perf_counter()
        rows = await conn.fetch(GROUPED)
        return time.perf_counter() - began, {r[0]: tuple(r[1:]) for r in rows}
    finally:
        await conn.close()


def fetch_results(base: str) -> tuple[float, list]:
    import json

    request = urllib.request.Request(
        f"{base}/api/v1/experiments/results?experiment_key=homepage_hero_test",
        headers={"X-Api-Key": KEY},
    )
    began = time.perf_counter()
    with urllib.request.urlopen(request, timeout=60) as response:
        body = json.loads(response.read())
    return time.perf_counter() - began, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        database, drop = fresh_database("postgresql", Path(folder))
        env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": folder, "API_KEY": KEY,
               "LOG_LEVEL": "warning"}  # fmt: skip
        server = None
        try:
            run_cli(["db", "upgrade", "0006"], env)
            asyncio.run(seed(database))
            print(f"generating {args.events:,} events at revision 0006")
            made = asyncio.run(generate(database, args.events))
            old, expected = asyncio.run(grouped(database))
            began = time.perf_counter()
            subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, cwd=ROOT)
            upgrade = time.perf_counter() - began
            server = start_server(env, PORT, "--no-migrate")
            base = f"http://127.0.0.1:{PORT}"
            timings = []
            for _ in range(args.requests):
                elapsed, body = fetch_results(base)
                timings.append(elapsed)
            variants = {v["variant_key"]: v for v in body[0]["variants"]}
            for key, (impressions, conversions, sessions, _converting) in expected.items():
                got = variants[key]
                if (got["impressions"], got["conversions"], got["unique_sessions"]) != (
                    impressions, conversions, sessions
                ):  # fmt: skip
                    raise SystemExit(f"results disagree with the events for {key}: {got}")
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            drop()
    print(f"events generated:              {args.events:,} in {made:.0f} s")
    print(f"grouping the events (before):  {old * 1000:,.0f} ms")
    print(f"upgrade filling the totals:    {upgrade:.1f} s")
    print(
        f"results endpoint over HTTP:    median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms ({args.requests} requests; counts match the events)"
    )


if __name__ == "__main__":
    main()
