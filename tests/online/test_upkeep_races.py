"""An admin's edit racing the server's upkeep: each race is played in the order that loses a
write without the row lock. The upkeep has read the experiment and decided (a stop, new
weights) and holds its transaction open; the admin's request starts and gets as far as it can
(it waits for the experiment's row); then the upkeep commits, and the edit must work on what
the upkeep wrote instead of writing back what it had read before."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from promptlooper.online import service, tallies, traffic, upkeep
from promptlooper.online.models import ArmEvent, OnlineExperiment
from tests.factories import create_online_experiment, online_experiment

KEY = "raced"
EXPERIMENT = f"/api/admin/experiments/{KEY}"
COST = {
    "name": "cost-per-call",
    "source": "llm_call",
    "aggregation": "ratio",
    "denominator": "llm_call",
    "direction": "lower",
}


async def _store(sessionmaker, arms: dict[str, tuple[int, int, float | None]], tag: str) -> None:
    """Per arm: ``units`` exposed units, the first ``converted`` of them converting, each unit
    making an LLM call of about ``cost`` (none when None)."""
    now = datetime.now(UTC)
    rows = []
    for variant, (units, converted, cost) in arms.items():
        for index in range(units):
            unit = {"experiment_key": KEY, "variant_key": variant, "session_id": f"{tag}{index}"}
            unit |= {"path": "/", "event_id": None, "metadata": None, "created_at": now}
            rows.append(unit | {"event_type": "impression", "value": None})
            if index < converted:
                rows.append(unit | {"event_type": "conversion", "value": None})
            if cost is not None:
                spread = 0.8 + 0.1 * (index % 5)
                rows.append(unit | {"event_type": "llm_call", "value": cost * spread})
    async with sessionmaker() as session:
        await tallies.record(session, rows, frozenset({"llm_call"}))
        await session.commit()


async def _waits_for_the_row(request: asyncio.Task[Any], sessionmaker) -> None:
    """Return once ``request`` waits for the lock the upkeep holds. PostgreSQL shows the
    waiting backend; SQLite's writers queue at ``BEGIN`` without a trace, so there the request
    gets a moment to reach it (it cannot pass it: the upkeep holds SQLite's write lock)."""
    async with sessionmaker() as session:
        if session.bind.dialect.name != "postgresql":
            await asyncio.sleep(0.3)
            assert not request.done(), request.result()
            return
        waiting = text(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        for _ in range(1000):
            assert not request.done(), request.result()
            if await session.scalar(waiting):
                return
            await session.rollback()
            await asyncio.sleep(0.01)
    raise AssertionError("the admin's request never waited for the experiment's row")


async def _experiment(sessionmaker) -> OnlineExperiment:
    async with sessionmaker() as session:
        return await service.get_experiment(session, KEY)


def _bandit(bandit: dict[str, float]) -> dict[str, Any]:
    return online_experiment(
        KEY, "better", type="bandit", primary_metric="conversion", bandit=bandit
    )


async def test_a_floor_edit_during_a_bandit_update_keeps_the_new_weights(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    bandit = {"every_exposures": 200, "every_seconds": 3600, "floor": 0.05}
    await create_online_experiment(client, bootstrap_headers, _bandit(bandit))
    await _store(sessionmaker, {"control": (300, 30, None), "better": (300, 30, None)}, "a")
    await upkeep.run_once(sessionmaker)
    before = (await _experiment(sessionmaker)).weights
    assert before is not None
    await _store(sessionmaker, {"control": (300, 15, None), "better": (300, 150, None)}, "b")
    edited = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    edited["bandit"] = bandit | {"floor": 0.1}

    async with sessionmaker() as session:
        done = await upkeep.check(session, KEY)
        assert [d.split(":")[0] for d in done] == ["new weights"]
        learned = list((await service.get_experiment(session, KEY)).weights)
        edit = asyncio.create_task(client.put(EXPERIMENT, json=edited, headers=bootstrap_headers))
        await _waits_for_the_row(edit, sessionmaker)
        await session.commit()
    assert (await edit).status_code == 200, (await edit).text

    assert learned[1] > before[1]
    # The raised floor applies to the weights the update learned, not to those it replaced.
    assert (await _experiment(sessionmaker)).weights == pytest.approx(
        traffic.refloor(learned, 0.05, 0.1)
    )


async def test_resuming_an_arm_while_the_guardrail_stops_another_keeps_the_stop(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    defined = await client.post("/api/admin/metrics", json=COST, headers=bootstrap_headers)
    assert defined.status_code == 201, defined.text
    arms = [
        {"variant_key": "control", "allocation": 34, "is_control": True},
        {"variant_key": "overruled", "allocation": 33},
        {"variant_key": "pricey", "allocation": 33},
    ]
    guard = {"cost-per-call": {"threshold": 0.2}}
    body = online_experiment(KEY, "unused", variants=arms, guardrail_metrics=["cost-per-call"])
    body |= {"guardrail_thresholds": guard, "auto_stop": True}
    await create_online_experiment(client, bootstrap_headers, body)
    costs = {"control": (300, 0, 1.0), "overruled": (300, 0, 1.0), "pricey": (300, 0, 2.0)}
    await _store(sessionmaker, costs, "u")
    async with sessionmaker() as session:  # stopped earlier, a person is about to resume it
        experiment = await service.get_experiment(session, KEY)
        experiment.stopped_arms = {"overruled": {"metric": "cost-per-call", "at": "earlier"}}
        await session.commit()

    resume = f"{EXPERIMENT}/arms/overruled/resume"
    async with sessionmaker() as session:
        done = await upkeep.check(session, KEY)
        assert done == ["stopped arm pricey (guardrail cost-per-call)"]
        resumed = asyncio.create_task(client.post(resume, headers=bootstrap_headers))
        await _waits_for_the_row(resumed, sessionmaker)
        await session.commit()
    assert (await resumed).status_code == 200, (await resumed).text

    assert set((await _experiment(sessionmaker)).stopped_arms) == {"pricey"}
    public = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    assert public["stopped_arms"] == ["pricey"]
    async with sessionmaker() as session:
        events = [(e.action, e.variant_key) for e in await session.scalars(select(ArmEvent))]
    assert sorted(events) == [("resumed", "overruled"), ("stopped", "pricey")]


async def test_stopping_an_experiment_during_a_bandit_update_leaves_it_stopped(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    bandit = {"every_exposures": 200, "every_seconds": 3600, "floor": 0.05}
    await create_online_experiment(client, bootstrap_headers, _bandit(bandit))
    await _store(sessionmaker, {"control": (300, 15, None), "better": (300, 150, None)}, "a")
    stopped = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json() | {
        "status": "stopped"
    }

    async with sessionmaker() as session:
        assert await upkeep.check(session, KEY)
        edit = asyncio.create_task(client.put(EXPERIMENT, json=stopped, headers=bootstrap_headers))
        await _waits_for_the_row(edit, sessionmaker)
        await session.commit()
    assert (await edit).status_code == 200, (await edit).text

    experiment = await _experiment(sessionmaker)
    assert experiment.status == "stopped"
    assert experiment.weights is not None  # the update came first, and the edit kept it


async def test_a_check_reads_the_experiment_afresh_and_skips_one_stopped_since(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    """``online check`` reads the experiment before it checks it, in the same session: the
    check must not decide from that earlier copy."""
    bandit = {"every_exposures": 200, "every_seconds": 3600, "floor": 0.05}
    await create_online_experiment(client, bootstrap_headers, _bandit(bandit))
    await _store(sessionmaker, {"control": (300, 15, None), "better": (300, 150, None)}, "a")
    async with sessionmaker() as session:
        if session.bind.dialect.name != "postgresql":
            pytest.skip("SQLite's writers take turns from their first statement: no other")
        read = await service.get_experiment(session, KEY)  # held, as ``online check`` holds it
        assert service.is_live(read)
        stop = await client.post(f"{EXPERIMENT}/archive", headers=bootstrap_headers)
        assert stop.status_code == 200, stop.text
        assert await upkeep.check(session, KEY, datetime.now(UTC) + timedelta(hours=2)) == []
        assert read.status == "stopped"
        await session.commit()
    assert (await _experiment(sessionmaker)).weights is None
