"""Online results at scale: the results endpoint with millions of stored events (PostgreSQL).

A fresh database at revision 0006 (events, no running totals) gets N events made in SQL:
sessions of four events (impression, cta_click, form_start, then form_submit or, for about a
fifth of control and a quarter of treatment sessions, a conversion with a value), alternating
between the two variants of `homepage_hero_test`. Then:

1. the grouping query the results ran before the running totals (per session, then per
   variant), timed on those events with the index it had;
2. `promptlooper db upgrade`: revision 0007 fills the totals from the events (timed);
3. five metrics are defined (revenue per session, converted, order value, clicks per session,
   submitted) and named by the experiment, and their running totals filled from the events as
   ingestion would have kept them (one row per exposed session and event name, summed per
   variant);
4. `GET /api/v1/experiments/results` through a `promptlooper serve` process, timed over HTTP;
   its counts are checked against the grouping query's, and the defined metrics against the
   built-in ones measuring the same thing.

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


METRICS = [
    {"name": "revenue", "source": "conversion", "aggregation": "mean"},
    {"name": "converted", "source": "conversion", "aggregation": "proportion"},
    {"name": "order-value", "source": "conversion", "aggregation": "ratio",
     "denominator": "conversion"},
    {"name": "clicks", "source": "cta_click", "aggregation": "mean"},
    {"name": "submitted", "source": "form_submit", "aggregation": "proportion",
     "direction": "lower"},
]  # fmt: skip

FILL_TERMS = """
WITH units AS (
    SELECT variant_key, session_id, event_type, COUNT(*) AS n,
           SUM(COALESCE(value, 1))::float8 AS v
    FROM online_events
    WHERE experiment_key = 'homepage_hero_test' AND event_type = ANY($1::text[])
    GROUP BY variant_key, session_id, event_type
), stored AS (
    INSERT INTO online_unit_events
        (experiment_key, variant_key, session_id, event_type, count, value)
    SELECT 'homepage_hero_test', variant_key, session_id, event_type, n, v FROM units
), exposed AS (
    SELECT DISTINCT variant_key, session_id FROM online_events
    WHERE experiment_key = 'homepage_hero_test' AND event_type = 'impression'
)
INSERT INTO online_metric_totals (experiment_key, variant_key, term, value)
SELECT 'homepage_hero_test', u.variant_key, u.event_type || t.suffix, SUM(t.x)
FROM units AS u JOIN exposed USING (variant_key, session_id)
CROSS JOIN LATERAL (VALUES (':units', 1.0), (':n', u.n::float8), (':v', u.v),
    (':nn', (u.n * u.n)::float8), (':vv', u.v * u.v), (':nv', u.n * u.v)) AS t(suffix, x)
GROUP BY u.variant_key, u.event_type || t.suffix
"""


def define_metrics(base: str, database: str) -> float:
    """Define the metrics, name them in the experiment, and fill their totals (timed)."""
    for metric in METRICS:
        call(base, "POST", "/api/admin/metrics", metric)
    path = "/api/admin/experiments/homepage_hero_test"
    experiment = call(base, "GET", path)
    names = [m["name"] for m in METRICS]
    experiment |= {"primary_metric": names[0], "secondary_metrics": names[1:]}
    call(base, "PUT", path, experiment)

    async def fill() -> float:
        conn = await asyncpg.connect(database)
        try:
            began = time.perf_counter()
            await conn.execute(FILL_TERMS, sorted({m["source"] for m in METRICS}))
            await conn.execute("VACUUM ANALYZE online_metric_totals")
            return time.perf_counter() - began
        finally:
            await conn.close()

    return asyncio.run(fill())


def call(base: str, method: str, path: str, body: dict | None = None) -> dict:
    import json

    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"X-Api-Key": KEY, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def check_metrics(body: list) -> None:
    """Each defined metric equals the built-in one that measures the same thing."""
    for variant in body[0]["variants"][1:]:
        found, built_in = variant["metrics"], variant["stats"]
        pairs = [("revenue", "value_per_session"), ("converted", "conversion_rate")]
        for name, same in pairs:
            for side in ("control_mean", "treatment_mean", "relative_lift"):
                ours, theirs = found[name][side], built_in[same][side]
                if abs(ours - theirs) > 1e-9 * max(1.0, abs(theirs)):
                    raise SystemExit(f"metric {name} disagrees with {same}: {ours} != {theirs}")


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
            print(f"generating {args.events:,} events at revision 0006")
            made = asyncio.run(generate(database, args.events))
            old, expected = asyncio.run(grouped(database))
            began = time.perf_counter()
            subprocess.run([*CLI, "db", "upgrade"], env=env, check=True, cwd=ROOT)
            upgrade = time.perf_counter() - began
            asyncio.run(seed(database))  # the registry as it is now; events name it by key
            server = start_server(env, PORT, "--no-migrate")
            base = f"http://127.0.0.1:{PORT}"
            filled = define_metrics(base, database)
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
            check_metrics(body)
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            drop()
    print(f"events generated:              {args.events:,} in {made:.0f} s")
    print(f"grouping the events (before):  {old * 1000:,.0f} ms")
    print(f"upgrade filling the totals:    {upgrade:.1f} s")
    print(f"filling 5 metrics' totals:     {filled:.1f} s")
    print(
        f"results endpoint over HTTP:    median {statistics.median(timings) * 1000:.1f} ms, "
        f"max {max(timings) * 1000:.1f} ms ({args.requests} requests, {len(METRICS)} defined "
        "metrics; counts match the events, metrics the built-in ones)"
    )


if __name__ == "__main__":
    main()
