"""Guardrails and bandits over agent variants: performance records with a ``unit_id`` feed
the guardrail that stops an expensive arm (whose units then resolve to the control's config)
and a bandit, whose new units keep the arm their first record stored."""

from __future__ import annotations

import html
import random

import httpx
from sqlalchemy import select

from promptlooper.online import service, upkeep
from promptlooper.online.models import UnitAssignment
from promptlooper.variants.models import PerformanceRecord
from tests.factories import create_online_experiment
from tests.variants.conftest import extractor_experiment, make_variant
from tests.variants.test_agents_api import url
from tests.web.conftest import ui_admin  # noqa: F401 (fixture)

METRICS = [
    {"name": "cost-per-call", "kind": "performance", "source": "cost",
     "aggregation": "ratio", "denominator": "cost", "direction": "lower"},
    {"name": "quality", "kind": "performance", "source": "quality", "aggregation": "mean"},
]  # fmt: skip


async def _hot_experiment(client: httpx.AsyncClient, owner, agent, headers, **changes) -> dict:
    """The metrics, a hot variant of the agent and an experiment (``changes``) whose ``hot``
    arm serves it, judged on quality; returns the variant."""
    for metric in METRICS:
        created = await client.post("/api/admin/metrics", json=metric, headers=headers)
        assert created.status_code == 201, created.text
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    definition = extractor_experiment(hot["id"], **({"primary_metric": "quality"} | changes))
    await create_online_experiment(client, headers, definition)
    return hot


async def _resolve(client, owner, agent, unit: str) -> dict:
    return (
        await client.get(url(agent, "config"), params={"unit_id": unit}, headers=owner.headers)
    ).json()


async def _calls(client, owner, agent, units: list[str], call) -> dict[str, str]:
    """Each unit resolves its config, then logs three calls made with it."""
    arms, records = {}, []
    for unit in units:
        arm = (await _resolve(client, owner, agent, unit))["experiment"]["variant_key"]
        arms[unit] = arm
        records += [call(arm) | {"unit_id": unit} for _ in range(3)]
    stored = await client.post(url(agent, "performance"), json=records, headers=owner.headers)
    assert stored.status_code == 201, stored.text
    return arms


async def test_an_expensive_agent_variant_is_stopped_and_its_units_get_the_control(
    client: httpx.AsyncClient, owner, agent, sessionmaker, bootstrap_headers
):
    hot = await _hot_experiment(
        client,
        owner,
        agent,
        bootstrap_headers,
        guardrail_metrics=["cost-per-call"],
        guardrail_thresholds={"cost-per-call": {"threshold": 0.2}},
        auto_stop=True,
    )
    rng = random.Random(5)
    arms = await _calls(
        client,
        owner,
        agent,
        [f"visitor-{i}" for i in range(160)],
        lambda arm: {"cost": (0.02 if arm == "hot" else 0.01) * rng.uniform(0.8, 1.2)},
    )
    hot_unit = next(unit for unit, arm in arms.items() if arm == "hot")
    assert (await _resolve(client, owner, agent, hot_unit))["variant_id"] == hot["id"]

    await upkeep.run_once(sessionmaker)

    served = await _resolve(client, owner, agent, hot_unit)
    assert served["experiment"]["variant_key"] == "control"
    assert served["variant_id"] != hot["id"]
    assert served["config"]["temperature"] != 1.2

    # Served the control, the unit still counts in its own arm (intent to treat): its calls
    # move the hot arm's cost, not the control's, and no arm gains a unit.
    before = await _arms(client, bootstrap_headers)
    calls = [{"cost": 0.05, "unit_id": hot_unit}] * 2
    stored = await client.post(url(agent, "performance"), json=calls, headers=owner.headers)
    assert stored.status_code == 201, stored.text
    after = await _arms(client, bootstrap_headers)
    assert after["units"] == before["units"]
    assert after["cost"]["control"] == before["cost"]["control"]
    assert after["cost"]["hot"] > before["cost"]["hot"]
    async with sessionmaker() as session:
        filed = await session.scalars(
            select(PerformanceRecord.arm_key).where(PerformanceRecord.unit_id == hot_unit)
        )
        assert set(filed) == {"hot"}


async def _arms(client: httpx.AsyncClient, headers: dict) -> dict[str, dict[str, int]]:
    """Per arm, the units its primary metric (quality) is measured on and its cost per call."""
    found = (
        await client.get(
            "/api/v1/experiments/results",
            params={"experiment_key": "extractor_temperature"},
            headers=headers,
        )
    ).json()[0]
    keys = [v["variant_key"] for v in found["variants"]]
    cost = found["variants"][1]["metrics"]["cost-per-call"]
    return {
        "units": dict(zip(keys, found["health"]["units_per_arm"], strict=True)),
        "cost": {"control": cost["control_mean"], "hot": cost["treatment_mean"]},
    }


async def test_a_bandit_over_agent_variants_keeps_each_unit_on_its_first_arm(
    client: httpx.AsyncClient, owner, agent, sessionmaker, bootstrap_headers
):
    await _hot_experiment(
        client,
        owner,
        agent,
        bootstrap_headers,
        type="bandit",
        bandit={"every_exposures": 1, "every_seconds": 3600, "floor": 0.05},
    )
    rng = random.Random(9)

    def call(arm: str) -> dict:
        return {"quality": (0.9 if arm == "hot" else 0.4) + rng.uniform(-0.1, 0.1)}

    first = await _calls(client, owner, agent, [f"early-{i}" for i in range(60)], call)
    async with sessionmaker() as session:
        rows = await session.execute(select(UnitAssignment.unit_id, UnitAssignment.variant_key))
        stored = dict(rows.all())
    assert stored == first  # each unit's first record stored the arm its resolution gave
    # Units served count toward the schedule as exposures do: the server's upkeep updates.
    await upkeep.run_once(sessionmaker)
    async with sessionmaker() as session:
        experiment = await service.get_experiment(session, "extractor_temperature")
        assert experiment.weights[1] > 0.9
    for unit, arm in first.items():
        assert (await _resolve(client, owner, agent, unit))["experiment"]["variant_key"] == arm
    later = await _calls(client, owner, agent, [f"later-{i}" for i in range(40)], call)
    assert list(later.values()).count("hot") > 30


async def test_the_results_page_shows_an_experiment_fed_only_by_performance_records(
    client: httpx.AsyncClient,
    owner,
    agent,
    bootstrap_headers,
    ui_admin,  # noqa: F811
):
    # The primary metric left at conversion, which no browser event feeds: the guardrail's
    # cost per call is all there is, and the page shows it.
    await _hot_experiment(
        client, owner, agent, bootstrap_headers, primary_metric="conversion",
        guardrail_metrics=["cost-per-call"],
    )  # fmt: skip
    rng = random.Random(3)
    units = [f"visitor-{i}" for i in range(40)]
    await _calls(client, owner, agent, units, lambda arm: {"cost": 0.01 * rng.uniform(0.8, 1.2)})

    page = html.unescape((await ui_admin.get("/ui/online/extractor_temperature")).text)

    assert "No events yet" not in page
    assert "Against control" in page
    assert "cost-per-call" in page
