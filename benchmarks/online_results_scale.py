"""Online results and bandit updates at 10 million events and performance records (PostgreSQL).

The stored state of a three-arm bandit over agent variants (``support_bot``: control, concise,
detailed) that has run for 28 days: ``--units`` units (default 1.8 million, a third per arm),
each with an impression, 1–6 clicks, sometimes a form start, a signup, a purchase (with its
built-in conversion) and a purchase before its first impression (CUPED's covariate), about
10.2 million browser events in all; and 1–3 LLM calls per unit in the performance log (about
3.6 million records). Five defined metrics are named: signups (a proportion), revenue per unit
(a mean with CUPED), answer quality per call (a performance ratio, the bandit's primary
metric), cost per unit (a performance mean) and latency per call (a guardrail with auto-stop).
Beside them: a sticky assignment per unit and 672 hourly weight changes.

The state is written directly in SQL (``generate_series``), in the shapes ingestion writes:
the raw events and records, one tally (with its first impression's time), arms and assignment
row per unit, one row per unit and tracked event name (its events before that impression
counted apart), one row per unit for its served calls, and the per-arm, per-day and
per-experiment totals. Before that, the same SQL builds a 3,000-unit sample, the sample's
events and records are fed through the real write path (``tallies.record`` in batches in time
order, as the event ingestion calls it, and ``tallies.record_calls``, as the performance log
does) under another key, and every running-totals table is compared row by row: the benchmark
stops if the shapes differ.

Then, timed: ``GET /api/v1/experiments/results`` over HTTP against a ``promptlooper serve``
process (every answer carries all three statistics engines — frequentist, sequential and
Bayesian — for each metric; asked with the flat and the proper prior, and with
Benjamini–Hochberg), and the bandit update the server's upkeep runs (``upkeep.check``: the
guardrail check, the schedule, Thompson sampling, the new weights, committed), in process;
``--exposures`` exposures are added (untimed) before each so that the update is due. Last, the
statements of one results call and one update are run again under ``EXPLAIN ANALYZE``: their
time in the database, and any sequential scan of a table with more than 100,000 rows.

    .venv/bin/python -m benchmarks.online_results_scale --units 1800000 --repeats 15
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import tempfile
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy import event, text

from benchmarks.performance_ingestion import admin_key
from benchmarks.server import CLI, ROOT, run_cli, start_server
from benchmarks.sweep_throughput import fresh_database
from promptlooper.db.engine import create_engine, create_sessionmaker
from promptlooper.online import results, tallies, upkeep
from promptlooper.online.history import SERVED_UNITS

KEY = "support_bot"
SAMPLE_SQL, SAMPLE_REAL = "shape_by_sql", "shape_by_ingestion"
SAMPLE_UNITS = 3_000
ARMS = ("control", "concise", "detailed")
DAYS = 28
START = datetime(2026, 11, 1, tzinfo=UTC)
CHUNK = 200_000
TRACKED = frozenset({"signup", "purchase"})
WINDOWS = {"purchase": frozenset({14})}
"""The CUPED window of revenue (the default): the purchase a minute before exposure is in it."""
BIG = 100_000
"""A table with more rows than this must never be scanned whole by a results call."""

METRICS = [
    {"name": "signed-up", "source": "signup", "aggregation": "proportion"},
    {"name": "revenue", "source": "purchase", "aggregation": "mean", "cuped": True},
    {"name": "answer-quality", "kind": "performance", "source": "quality",
     "aggregation": "ratio", "denominator": "quality"},
    {"name": "cost-per-unit", "kind": "performance", "source": "cost", "aggregation": "mean",
     "direction": "lower"},
    {"name": "latency-per-call", "kind": "performance", "source": "latency_ms",
     "aggregation": "ratio", "denominator": "latency_ms", "direction": "lower"},
]  # fmt: skip


def _hash(salt: str) -> str:
    """A pseudo-random non-negative integer of the row, SQL."""
    return f"(hashint8({salt}) & 2147483647)"


def _unit(k: int) -> str:
    return _hash(f"i * 16 + {k}")


def _call(k: int) -> str:
    return _hash(f"-(i * 64 + j * 16 + {k}) - 1")


VARIANT = "(ARRAY['control', 'concise', 'detailed'])[arm + 1]"

UNITS = f"""
units AS (
    SELECT i, arm, 'u' || i AS unit, {VARIANT} AS variant, day,
           $4::timestamptz + day * interval '1 day' + ({_unit(0)} % 80000) * interval '1 second'
               AS t0,
           1 + {_unit(3)} % 6 AS clicks, {_unit(8)} % 2 AS form,
           ({_unit(4)} % 100 < 20 + 2 * arm)::int AS signup,
           pre, (5 + {_unit(2)} % 50)::float8 * pre AS pre_v,
           ({_unit(5)} % 100 < 15 + arm OR (pre = 1 AND {_unit(5)} % 3 = 0))::int AS buy,
           (10 + {_unit(6)} % 90 + 5 * arm + (5 + {_unit(2)} % 50) * pre)::float8 AS buy_v,
           1 + {_unit(7)} % 3 AS calls
    FROM (SELECT i, (i % 3)::int AS arm, (i % {DAYS})::int AS day,
                 ({_unit(1)} % 10 = 0)::int AS pre
          FROM generate_series($2::bigint, $3::bigint - 1) AS i) AS drawn
)"""

# One statement per chunk of units: the raw events and records, every per-unit row ingestion
# keeps for them, and their share of the arms' metric terms. A unit's events all follow its
# first impression (its ``exposed_at``) but for the purchase a tenth of units make a minute
# before it: that one is the row's ``pre_count`` and ``pre_value``, CUPED's covariate, and the
# metric counts the rest. Every unit has an impression, so all of its rows count (ingestion
# counts exposed units); its calls share one ``online_unit_calls`` row, every call giving every
# field.
PER_UNIT = f"""
WITH {UNITS.strip()},
calls AS (
    SELECT u.i, u.arm, u.unit, u.variant, u.t0 + (20 * j + 5) * interval '1 second' AS at,
           (300 + {_call(1)} % 900 + 20 * u.arm)::float8 AS latency_ms,
           200 + {_call(2)} % 700 AS tokens_in, 20 + {_call(3)} % 180 AS tokens_out,
           (0.0008 + ({_call(4)} % 1000) * 0.000002 * (1 + 0.1 * u.arm))::float8 AS cost,
           {_call(5)} % 50 <> 0 AS success,
           (0.4 + 0.02 * u.arm + ({_call(6)} % 1000) / 2000.0)::float8 AS quality
    FROM units AS u CROSS JOIN LATERAL generate_series(0, u.calls - 1) AS j
),
events AS (
    INSERT INTO online_events
        (experiment_key, variant_key, session_id, path, event_type, event_id, value, created_at)
    SELECT $1, u.variant, u.unit, '/support', e.kind, u.unit || '-' || e.k, e.value,
           u.t0 + e.offset_s * interval '1 second'
    FROM units AS u CROSS JOIN LATERAL (
        SELECT 'purchase' AS kind, 0 AS k, -60 AS offset_s, u.pre_v AS value WHERE u.pre = 1
        UNION ALL SELECT 'impression', 1, 0, NULL
        UNION ALL SELECT 'cta_click', 10 + c, 10 * c, NULL FROM generate_series(1, u.clicks) AS c
        UNION ALL SELECT 'form_start', 2, 100, NULL WHERE u.form = 1
        UNION ALL SELECT 'signup', 3, 200, NULL WHERE u.signup = 1
        UNION ALL SELECT 'purchase', 4, 300, u.buy_v WHERE u.buy = 1
        UNION ALL SELECT 'conversion', 5, 300, u.buy_v WHERE u.buy = 1
    ) AS e
),
records AS (
    INSERT INTO performance_records
        (id, agent_id, variant_id, latency_ms, tokens_in, tokens_out, cost, success, quality,
         unit_id, experiment_key, arm_key, created_at)
    SELECT gen_random_uuid(), $5::uuid, ($6::uuid[])[arm + 1], latency_ms, tokens_in,
           tokens_out, cost, success, quality, unit, $1, variant, at
    FROM calls
),
tallied AS (
    INSERT INTO online_session_tallies
        (experiment_key, variant_key, session_id, events, impressions, conversions, value,
         exposed_at)
    SELECT $1, variant, unit, pre + 1 + clicks + form + signup + 2 * buy, 1, buy, buy * buy_v, t0
    FROM units
),
armed AS (
    INSERT INTO online_session_arms (experiment_key, session_id, arms) SELECT $1, unit, 1 FROM units
),
assigned AS (
    INSERT INTO online_unit_assignments (experiment_key, unit_id, variant_key)
    SELECT $1, unit, variant FROM units
),
unit_rows AS (
    SELECT variant, unit, 'signup' AS kind, 1 AS count, 1.0::float8 AS value, 0 AS pre_count,
           0::float8 AS pre_value
    FROM units WHERE signup = 1
    UNION ALL
    SELECT variant, unit, 'purchase', pre + buy, pre_v + buy * buy_v, pre, pre_v
    FROM units WHERE pre + buy > 0
),
unit_events AS (
    INSERT INTO online_unit_events
        (experiment_key, variant_key, session_id, event_type, count, value, pre_count, pre_value)
    SELECT $1, variant, unit, kind, count, value, pre_count, pre_value FROM unit_rows
),
covariates AS (  -- every unit with purchases: its purchase before exposure is in the window
    INSERT INTO online_unit_covariates
        (experiment_key, variant_key, session_id, event_type, window_days, value)
    SELECT $1, variant, unit, kind, 14, pre_value FROM unit_rows WHERE kind = 'purchase'
),
served AS (
    SELECT variant, unit, count(*) AS calls, sum(cost) AS cost, sum(latency_ms) AS latency_ms,
           sum(tokens_in)::float8 AS tokens_in, sum(tokens_out)::float8 AS tokens_out,
           sum(success::int)::float8 AS success, sum(quality) AS quality
    FROM calls GROUP BY variant, unit
),
unit_calls AS (
    INSERT INTO online_unit_calls
        (experiment_key, variant_key, unit_id, calls, cost_calls, cost, latency_ms_calls,
         latency_ms, tokens_in_calls, tokens_in, tokens_out_calls, tokens_out, success_calls,
         success, quality_calls, quality)
    SELECT $1, variant, unit, calls, calls, cost, calls, latency_ms, calls, tokens_in, calls,
           tokens_out, calls, success, calls, quality
    FROM served
),
shares AS (  -- per unit and source: the count and value measured, and the covariate
    SELECT variant, kind AS source, (count - pre_count)::float8 AS n, value - pre_value AS v,
           pre_value AS p, count > pre_count AS present, TRUE AS event
    FROM unit_rows
    UNION ALL
    SELECT s.variant, 'perf:' || f.field, s.calls::float8, f.value, 0, f.value > 0, FALSE
    FROM served AS s CROSS JOIN LATERAL (VALUES
        ('calls', s.calls::float8), ('cost', s.cost), ('latency_ms', s.latency_ms),
        ('tokens_in', s.tokens_in), ('tokens_out', s.tokens_out), ('success', s.success),
        ('quality', s.quality)) AS f(field, value)
)
INSERT INTO online_metric_totals (experiment_key, variant_key, term, value)
SELECT $1, r.variant, r.source || t.suffix, sum(t.x)
FROM shares AS r CROSS JOIN LATERAL (
    SELECT suffix, x FROM (VALUES
        (':units', r.present::int::float8), (':n', r.n), (':v', r.v), (':nn', r.n * r.n),
        (':vv', r.v * r.v), (':nv', r.n * r.v),
        (':p14', r.p), (':pp14', r.p * r.p), (':vp14', r.v * r.p)) AS terms(suffix, x)
    WHERE (r.event AND r.source = 'purchase') OR suffix NOT IN (':p14', ':pp14', ':vp14')
) AS t
GROUP BY r.variant, r.source || t.suffix
ON CONFLICT (experiment_key, variant_key, term)
DO UPDATE SET value = online_metric_totals.value + excluded.value
"""

VARIANT_TOTALS = f"""
WITH {UNITS.strip()}
INSERT INTO online_variant_totals
    (experiment_key, variant_key, impressions, cta_clicks, form_starts, form_submits,
     conversions, value_total, unique_sessions, exposed, converting, value_exposed,
     value_squares)
SELECT $1, variant, count(*), sum(clicks), sum(form), 0, sum(buy), sum(buy * buy_v),
       count(*), count(*), sum(buy), sum(buy * buy_v), sum(buy * buy_v * buy_v)
FROM units GROUP BY variant
"""

DAILY_TOTALS = f"""
WITH {UNITS.strip()}
INSERT INTO online_daily_totals (experiment_key, variant_key, day, exposed, converting)
SELECT $1, variant, ($4::timestamptz AT TIME ZONE 'UTC')::date + day, count(*), sum(buy)
FROM units GROUP BY variant, day
"""

EXPERIMENT_TOTALS = """
INSERT INTO online_experiment_totals (experiment_key, sessions, multiple) VALUES ($1, $2, 0)
"""

TOTALS_TABLES = {
    "online_session_tallies": ("variant_key", "session_id"),
    "online_session_arms": ("session_id",),
    "online_unit_events": ("variant_key", "session_id", "event_type"),
    "online_unit_calls": ("variant_key", "unit_id"),
    "online_unit_covariates": ("variant_key", "session_id", "event_type", "window_days"),
    "online_pending_events": ("variant_key", "session_id", "event_type", "created_at"),
    "online_variant_totals": ("variant_key",),
    "online_experiment_totals": (),
    "online_daily_totals": ("variant_key", "day"),
    "online_metric_totals": ("variant_key", "term"),
}
"""The running-totals tables ingestion writes, each with its key after the experiment's."""


async def build(
    conn: asyncpg.Connection, key: str, units: int, agent: str, variants: list[str]
) -> None:
    """The stored state of ``units`` units of experiment ``key``, chunk by chunk."""
    for first in range(0, units, CHUNK):
        last = min(units, first + CHUNK)
        await conn.execute(PER_UNIT, key, first, last, START, agent, variants)
        if units > CHUNK:
            print(f"  {last:,} units", flush=True)
    await conn.execute(VARIANT_TOTALS, key, 0, units, START)
    await conn.execute(DAILY_TOTALS, key, 0, units, START)
    await conn.execute(EXPERIMENT_TOTALS, key, units)


async def ingest_sample(url: str) -> None:
    """The SQL-built sample's events and records through the real write path, under
    ``SAMPLE_REAL``: events in time order in batches of 250, records in batches of 100."""
    conn = await asyncpg.connect(_plain(url))
    try:
        events = await conn.fetch(
            "SELECT variant_key, session_id, path, event_type, event_id, value, created_at"
            " FROM online_events WHERE experiment_key = $1 ORDER BY created_at, id",
            SAMPLE_SQL,
        )
        calls = await conn.fetch(
            "SELECT arm_key, unit_id, cost, latency_ms, tokens_in, tokens_out, success, quality"
            " FROM performance_records WHERE experiment_key = $1 ORDER BY created_at, unit_id",
            SAMPLE_SQL,
        )
    finally:
        await conn.close()
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    rows = [{"experiment_key": SAMPLE_REAL, "metadata": None} | dict(e) for e in events]
    for start in range(0, len(rows), 250):
        async with sessionmaker() as session:
            await tallies.record(session, rows[start : start + 250], TRACKED, WINDOWS)
            await session.commit()
    served = [{"experiment_key": SAMPLE_REAL} | dict(c) for c in calls]
    for start in range(0, len(served), 100):
        async with sessionmaker() as session:
            await tallies.record_calls(session, served[start : start + 100])
            await session.commit()
    await engine.dispose()


async def compare_shapes(conn: asyncpg.Connection) -> dict[str, int]:
    """Every running-totals row of the SQL-built sample equals the ingested one's (floats to
    1e-9); the rows compared per table."""
    compared = {}
    for table, key in TOTALS_TABLES.items():
        order = ", ".join(key) or "experiment_key"
        query = f"SELECT * FROM {table} WHERE experiment_key = $1 ORDER BY {order}"
        built = await conn.fetch(query, SAMPLE_SQL)
        ingested = await conn.fetch(query, SAMPLE_REAL)
        if len(built) != len(ingested):
            raise SystemExit(f"{table}: {len(built)} rows built, {len(ingested)} ingested")
        for a, b in zip(built, ingested, strict=True):
            for column, x in dict(a).items():
                if column == "experiment_key":
                    continue
                y = b[column]
                same = (
                    math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9)
                    if isinstance(x, float) or isinstance(y, float)
                    else x == y
                )
                if not same:
                    raise SystemExit(f"{table}.{column}: built {dict(a)} ingested {dict(b)}")
        compared[table] = len(built)
    return compared


async def history(conn: asyncpg.Connection, units: int) -> None:
    """Hourly weight changes over the 28 days, the experiment dated to its start, and the
    rejections a live experiment collects. A change records the units exposed so far as
    ``history.exposed_total`` counts them: the primary metric (quality per call) is a
    performance metric, so the units the calls served."""
    changes = DAYS * 24
    rows = []
    for hour in range(changes):
        lead = min(0.9, 1 / 3 + hour / changes)  # the best arm's share grows
        weights = {"control": (1 - lead) / 2, "concise": (1 - lead) / 2, "detailed": lead}
        rows.append((
            KEY, json.dumps(weights), units * hour // changes, "bandit",
            START + timedelta(hours=hour + 1),
        ))  # fmt: skip
    await conn.executemany(
        "INSERT INTO online_weight_changes (id, experiment_key, weights, exposed, reason,"
        " created_at) VALUES (gen_random_uuid(), $1, $2::json, $3, $4, $5)",
        rows,
    )
    last = json.loads(rows[-1][1])
    await conn.execute(
        "UPDATE online_experiments SET created_at = $2, weights = $3::json"
        " WHERE experiment_key = $1",
        KEY, START, json.dumps([last[a] for a in ARMS]),
    )  # fmt: skip
    await conn.executemany(
        "INSERT INTO online_rejections (experiment_key, reason, count) VALUES ($1, $2, $3)",
        [(KEY, "bot", units // 50), (KEY, "unknown_variant", 37)],
    )


def call(base: str, key: str, method: str, path: str, body: dict | None = None) -> Any:
    request = urllib.request.Request(
        base + path,
        data=None if body is None else json.dumps(body).encode(),
        method=method,
        headers={"X-Api-Key": key, "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def setup(base: str, key: str) -> tuple[str, list[str]]:
    """The agent and its three variants, the metrics and the bandit; the agent's and the
    variants' ids."""
    project = call(base, key, "POST", "/api/projects", {"name": "support"})
    agent = call(
        base, key, "POST", f"/api/projects/{project['id']}/agents",
        {"name": "Support bot", "model_provider": "mock", "model_name": "small"},
    )  # fmt: skip
    path = f"/api/agents/{agent['id']}/variants"
    variants = [call(base, key, "POST", path, {"name": a, "model_name": a}) for a in ARMS]
    for metric in METRICS:
        call(base, key, "POST", "/api/admin/metrics", metric)
    call(base, key, "POST", "/api/admin/experiments", {
        "experiment_key": KEY, "name": "Support bot answers", "cookie_name": "exp_support",
        "type": "bandit", "primary_metric": "answer-quality",
        "secondary_metrics": ["signed-up", "revenue", "cost-per-unit"],
        "guardrail_metrics": ["latency-per-call"], "auto_stop": True,
        "guardrail_thresholds": {"latency-per-call": {"threshold": 0.2}},
        "bandit": {"every_exposures": 10_000, "every_seconds": 3600, "floor": 0.05},
        "variants": [
            {"variant_key": arm, "allocation": share, "is_control": arm == "control",
             "agent_variant_id": variant["id"]}
            for arm, share, variant in zip(ARMS, (34, 33, 33), variants, strict=True)
        ],
    })  # fmt: skip
    return agent["id"], [v["id"] for v in variants]


def timed_results(base: str, key: str, query: str, repeats: int) -> tuple[list[float], list]:
    timings, body = [], []
    for _ in range(repeats + 1):  # the first warms the server's caches and is not counted
        began = time.perf_counter()
        body = call(base, key, "GET", f"/api/v1/experiments/results?experiment_key={KEY}{query}")
        timings.append(time.perf_counter() - began)
    return timings[1:], body


def check_results(body: list) -> None:
    """Every named metric is reported for every treatment, with all three engines."""
    for variant in body[0]["variants"][1:]:
        for metric in METRICS:
            block = variant["metrics"][metric["name"]]
            missing = {"frequentist", "sequential", "bayesian"} - set(block)
            if missing:
                raise SystemExit(f"{metric['name']} of {variant['variant_key']}: {block}")


async def timed_updates(url: str, repeats: int, exposures: int) -> tuple[list[float], str]:
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    timings, done = [], []
    for _ in range(repeats + 1):  # the first warms the pool and the imports
        async with sessionmaker() as session:  # new exposures since the last update
            await session.execute(
                text(
                    "UPDATE online_variant_totals SET exposed = exposed + :n,"
                    " impressions = impressions + :n WHERE experiment_key = :key"
                ),
                {"n": -(-exposures // len(ARMS)), "key": KEY},
            )
            await session.execute(  # the schedule of a performance primary metric counts these
                text(
                    "UPDATE online_metric_totals SET value = value + :n"
                    " WHERE experiment_key = :key AND term = :term"
                ),
                {"n": -(-exposures // len(ARMS)), "key": KEY, "term": SERVED_UNITS},
            )
            await session.commit()
        began = time.perf_counter()
        async with sessionmaker() as session:
            done = await upkeep.check(session, KEY)
            await session.commit()
        timings.append(time.perf_counter() - began)
        if not any(line.startswith("new weights") for line in done):
            raise SystemExit(f"the update did not run: {done}")
    await engine.dispose()
    return timings[1:], done[-1]


async def explained(url: str) -> list[tuple[float, str, list[str]]]:
    """Each statement of one results computation and one bandit update, run again under
    EXPLAIN ANALYZE: its time in the database, its text, and the tables of more than
    ``BIG`` rows it scans whole."""
    engine = create_engine(url)
    sessionmaker = create_sessionmaker(engine)
    seen: list[tuple[str, Any]] = []

    def capture(_conn, _cursor, statement, parameters, _context, _many) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            seen.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", capture)
    async with sessionmaker() as session:
        await results.compute(session, [KEY])
        await upkeep.check(session, KEY)
        await session.rollback()
    event.remove(engine.sync_engine, "before_cursor_execute", capture)
    found = []
    async with engine.connect() as conn:
        sizes = dict(
            (
                await conn.exec_driver_sql(
                    "SELECT relname, reltuples FROM pg_class WHERE relkind = 'r'"
                )
            ).all()
        )
        for statement, parameters in seen:
            plan = (
                await conn.exec_driver_sql(
                    "EXPLAIN (ANALYZE, FORMAT JSON) " + statement, parameters
                )
            ).scalar_one()
            plan = plan[0] if isinstance(plan, list) else json.loads(plan)[0]
            scans = [
                node["Relation Name"]
                for node in _nodes(plan["Plan"])
                if node["Node Type"] == "Seq Scan" and sizes.get(node["Relation Name"], 0) > BIG
            ]
            total = plan["Planning Time"] + plan["Execution Time"]
            found.append((total, " ".join(statement.split())[:110], scans))
    await engine.dispose()
    return found


def _nodes(node: dict) -> list[dict]:
    return [node, *(n for child in node.get("Plans", []) for n in _nodes(child))]


async def sizes(database: str) -> dict[str, int]:
    conn = await asyncpg.connect(database)
    try:
        await conn.execute("ANALYZE")
        rows = await conn.fetch(
            "SELECT relname, reltuples::bigint FROM pg_class WHERE relkind = 'r'"
            " AND relname LIKE ANY (ARRAY['online_%', 'performance_records'])"
            " ORDER BY reltuples DESC"
        )
        return {r[0]: r[1] for r in rows}
    finally:
        await conn.close()


def api_key(env: dict[str, str]) -> str:
    """A new key for the admin an earlier run created (``admin_key``)."""
    made = subprocess.run([*CLI, "apikey", "create", "--user", "bench"], env=env, check=True,
                          capture_output=True, cwd=ROOT)  # fmt: skip
    return made.stdout.decode().strip()


def _plain(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


def _async(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


def _ms(timings: list[float]) -> str:
    ms = sorted(t * 1000 for t in timings)
    return f"median {statistics.median(ms):.1f} ms (min {ms[0]:.1f}, max {ms[-1]:.1f})"


def prepare(base: str, key: str, database: str, units: int) -> float:
    """The registry, the shape check on the sample, then the experiment's state (timed)."""
    agent, variants = setup(base, key)

    async def sample() -> dict[str, int]:
        conn = await asyncpg.connect(database)
        try:
            await build(conn, SAMPLE_SQL, SAMPLE_UNITS, agent, variants)
            await ingest_sample(_async(database))
            return await compare_shapes(conn)
        finally:
            await conn.close()

    compared = asyncio.run(sample())
    print("shapes: the SQL-built sample equals the ingested one:",
          ", ".join(f"{t} {n:,} rows" for t, n in compared.items()))  # fmt: skip

    async def fill() -> float:
        conn = await asyncpg.connect(database)
        try:
            began = time.perf_counter()
            await build(conn, KEY, units, agent, variants)
            await history(conn, units)
            return time.perf_counter() - began
        finally:
            await conn.close()

    print(f"building {units:,} units", flush=True)
    return asyncio.run(fill())


def measure(base: str, key: str, database: str, repeats: int, exposures: int) -> list[str]:
    lines = []
    for label, query in (
        ("flat prior, Holm", ""),
        ("proper prior, Holm", "&prior=proper"),
        ("flat prior, Benjamini-Hochberg", "&correction=bh"),
    ):
        timings, body = timed_results(base, key, query, repeats)
        check_results(body)
        lines.append(f"results over HTTP, {label}: {_ms(timings)}")
        print(lines[-1], flush=True)
    updates, done = asyncio.run(timed_updates(_async(database), repeats, exposures))
    lines.append(f"bandit update (upkeep.check, in process): {_ms(updates)}; {done}")
    print(lines[-1], flush=True)
    plans = asyncio.run(explained(_async(database)))
    lines.append(
        f"EXPLAIN ANALYZE, {len(plans)} statements of one results computation and one update: "
        f"{sum(p[0] for p in plans):.1f} ms in the database in all; the slowest:"
    )
    for total, statement, scans in sorted(plans, reverse=True)[:6]:
        lines.append(f"  {total:6.2f} ms  {statement}" + (f"  SEQ SCAN {scans}" if scans else ""))
    if any(scans for _, _, scans in plans):
        lines.append("a statement scans a large table whole")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=1_800_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--exposures", type=int, default=10_000)
    parser.add_argument("--port", type=int, default=8320)
    parser.add_argument("--keep", action="store_true", help="keep the database for --reuse")
    parser.add_argument(
        "--reuse", metavar="DATABASE_URL", help="measure again a database a --keep run built"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.reuse:
            database, drop = args.reuse, lambda: None
        else:
            database, drop = fresh_database("postgresql", Path(folder))
        env = {**os.environ, "DATABASE_URL": database, "DATA_DIR": folder,
               "LOG_LEVEL": "warning", "ONLINE_UPKEEP_SECONDS": "3600"}  # fmt: skip
        env.pop("REDIS_URL", None)
        server = None
        base = f"http://127.0.0.1:{args.port}"
        try:
            if args.reuse:
                key = api_key(env)
                server = start_server(env, args.port, "--no-migrate")
            else:
                run_cli(["db", "upgrade"], env)
                key = admin_key(env)
                server = start_server(env, args.port, "--no-migrate")
                built = prepare(base, key, database, args.units)
                print(f"built in {built:.0f} s", flush=True)
            counted = asyncio.run(sizes(database))
            print("rows:", ", ".join(f"{t} {n:,}" for t, n in counted.items()), flush=True)
            lines = measure(base, key, database, args.repeats, args.exposures)
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
            if args.keep:
                print(f"kept: --reuse {database}")
            else:
                drop()
    units = counted.get("online_unit_assignments", 0)
    print(f"\n{units:,} units, {counted.get('online_events', 0):,} events, "
          f"{counted.get('performance_records', 0):,} performance records; medians of "
          f"{args.repeats} after one untimed")  # fmt: skip
    print("\n".join(lines))


if __name__ == "__main__":
    main()
