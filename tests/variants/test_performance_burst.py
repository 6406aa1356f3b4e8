"""A burst of concurrent performance-record requests, on both databases: every acknowledged
record is stored once and filed under its unit's arm, the arms' running totals are exact, a
refused request leaves the others untouched, and the burst shares transactions."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
from sqlalchemy import event, func, select

from promptlooper.online.assignment import assign
from promptlooper.online.models import MetricTotals
from promptlooper.variants.models import PerformanceRecord
from tests.variants.conftest import make_agent, make_variant
from tests.variants.test_agents_api import url
from tests.variants.test_unit_resolution import _experiment

UNITS = [f"unit-{i}" for i in range(40)]
SINGLES = 120
BATCHES = 8
BATCH_SIZE = 25


def _call(n: int) -> dict:
    # Costs are binary fractions, so the expected sums are exact in floating point.
    return {"unit_id": UNITS[n % len(UNITS)], "cost": (n % 4) * 0.25, "latency_ms": 10 + n % 7}


async def test_a_burst_of_record_requests_loses_nothing_and_totals_are_exact(
    app, client: httpx.AsyncClient, sessionmaker, owner, agent, project_id, bootstrap_headers
):
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await _experiment(client, bootstrap_headers, hot["id"])
    other = await make_agent(client, owner, project_id, "Other")
    foreign = await make_variant(client, owner, other, name="X")
    commits = 0

    def count(_connection) -> None:
        nonlocal commits
        commits += 1

    event.listen(app.state.engine.sync_engine, "commit", count)
    target = url(agent, "performance")
    singles = [_call(n) for n in range(SINGLES)]
    batches = [
        [_call(SINGLES + b * BATCH_SIZE + i) for i in range(BATCH_SIZE)] for b in range(BATCHES)
    ]
    bad = [_call(0), {"variant_id": foreign["id"], "latency_ms": 5}]

    answers = await asyncio.gather(
        *(client.post(target, json=body, headers=owner.headers) for body in singles),
        *(client.post(target, json=body, headers=owner.headers) for body in batches),
        client.post(target, json=bad, headers=owner.headers),
    )
    event.remove(app.state.engine.sync_engine, "commit", count)

    *good, refused = answers
    assert [a.status_code for a in good] == [201] * (SINGLES + BATCHES)
    assert sum(a.json()["recorded"] for a in good) == SINGLES + BATCHES * BATCH_SIZE
    assert refused.status_code == 422
    assert foreign["id"] in refused.text
    assert commits < (SINGLES + BATCHES) / 2  # requests waited for shared transactions

    sent = singles + [call for body in batches for call in body]
    arm_of = {u: ["control", "hot"][assign(u, "extractor_temperature", [50, 50])] for u in UNITS}  # type: ignore[index]
    calls: Counter[str] = Counter(arm_of[c["unit_id"]] for c in sent)
    cost: Counter[str] = Counter()
    for c in sent:
        cost[arm_of[c["unit_id"]]] += c["cost"]
    async with sessionmaker() as session:
        filed = Counter(
            dict(
                (
                    await session.execute(
                        select(PerformanceRecord.arm_key, func.count()).group_by(
                            PerformanceRecord.arm_key
                        )
                    )
                ).all()
            )
        )
        terms = {
            (arm, term): value
            for arm, term, value in await session.execute(
                select(MetricTotals.variant_key, MetricTotals.term, MetricTotals.value)
            )
        }
    assert filed == calls  # all stored once, every one under its unit's arm, the refused not
    for arm in ("control", "hot"):
        assert terms[(arm, "perf:calls:v")] == calls[arm]
        assert terms[(arm, "perf:cost:v")] == cost[arm]
        assert terms[(arm, "perf:calls:units")] == len({u for u in UNITS if arm_of[u] == arm})
