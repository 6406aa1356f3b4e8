"""Cross-source ratio metrics: Σ cost from the performance log over Σ signups the browser
sent, per unit exposed or served, from running totals kept whichever side arrives first, and
agreeing with gbstats' ratio statistic on the same units."""

from __future__ import annotations

import asyncio
import random
import warnings
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import select

from promptlooper.online import bandits, definitions, history, results, service, stats, tallies
from promptlooper.online.assignment import assign
from promptlooper.online.models import MetricTotals
from tests.online.conftest import BROWSER
from tests.variants.conftest import make_variant
from tests.variants.test_agents_api import url
from tests.variants.test_unit_resolution import _experiment
from tests.web.conftest import UiClient, ui_admin  # noqa: F401 (the results page's admin)

KEY = "extractor_temperature"
RESULTS = f"/api/v1/experiments/results?experiment_key={KEY}"
METRIC = {
    "name": "cost-per-signup",
    "kind": "performance",
    "source": "cost",
    "aggregation": "ratio",
    "denominator": {"kind": "event", "source": "signup"},
    "direction": "lower",
}


@dataclass
class Unit:
    """One visitor: its arm, whether the browser sent an impression, its calls' costs, and
    its signups before and after the impression (those before are not in the metric)."""

    name: str
    arm: str
    impression: bool
    costs: list[float] = field(default_factory=list)
    before: int = 0
    after: int = 0

    @property
    def counts(self) -> bool:
        return self.impression or bool(self.costs)

    @property
    def signups(self) -> int:
        return self.after if self.impression else 0


def _units(rng: random.Random, count: int = 160) -> list[Unit]:
    """Some units are only served, some only exposed, most both; the treatment's calls cost
    more, and a unit that calls more signs up more (the two sides are correlated)."""
    units = []
    for index in range(count):
        name = f"visitor-{index}"
        arm = ["control", "hot"][assign(name, KEY, [50, 50])]  # type: ignore[index]
        unit = Unit(name, arm, impression=rng.random() < 0.85)
        calls = rng.choice([0, 1, 2, 3]) if unit.impression else rng.choice([1, 2])
        factor = 1.5 if arm == "hot" else 1.0
        unit.costs = [round(0.01 * factor * rng.uniform(0.5, 1.5), 5) for _ in range(calls)]
        unit.before = int(rng.random() < 0.3)
        unit.after = rng.choice([0, 1, 1, 2]) + (calls > 1)
        units.append(unit)
    return units


def _events(units: list[Unit], phase: str) -> list[dict]:
    """The browser's events: impressions and the signups before them, or those after."""
    now = datetime.now(UTC)
    found = []
    for unit in units:
        base = {"experiment_key": KEY, "variant_key": unit.arm, "session_id": unit.name}

        def at(minutes: int, base: dict = base) -> dict:
            return base | {"path": "/", "timestamp": (now - timedelta(minutes=minutes)).isoformat()}

        if phase == "first":
            if unit.impression:
                found.append(at(5) | {"event_name": "impression"})
            found += [at(10) | {"event_name": "signup"} for _ in range(unit.before)]
        else:
            found += [at(1) | {"event_name": "signup"} for _ in range(unit.after)]
    return found


def _records(units: list[Unit]) -> list[dict]:
    return [{"unit_id": u.name, "cost": cost} for u in units for cost in u.costs]


def _gbstats(units: list[Unit], arm: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.models.statistics import RatioStatistic, SampleMeanStatistic
    counted = [u for u in units if u.arm == arm and u.counts]
    costs = [sum(u.costs) for u in counted]
    signups = [float(u.signups) for u in counted]
    n = len(counted)
    return RatioStatistic(
        n=n,
        m_statistic=SampleMeanStatistic(n=n, sum=sum(costs), sum_squares=sum(c * c for c in costs)),
        d_statistic=SampleMeanStatistic(
            n=n, sum=sum(signups), sum_squares=sum(s * s for s in signups)
        ),
        m_d_sum_of_products=sum(c * s for c, s in zip(costs, signups, strict=True)),
    )


async def _send(client: httpx.AsyncClient, events: list[dict]) -> None:
    response = await client.post("/api/experiments/batch", json={"events": events}, headers=BROWSER)
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == 0, response.text


async def _setup(client: httpx.AsyncClient, owner, agent, headers) -> None:
    created = await client.post("/api/admin/metrics", json=METRIC, headers=headers)
    assert created.status_code == 201, created.text
    assert created.json()["denominator"] == "signup"
    assert created.json()["denominator_kind"] == "event"
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await _experiment(client, headers, hot["id"], primary_metric="cost-per-signup")


@pytest.mark.parametrize("order", ["records first", "events first", "interleaved"])
async def test_cost_per_signup_agrees_with_gbstats_whichever_side_arrives_first(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers, order: str
):
    await _setup(client, owner, agent, bootstrap_headers)
    units = _units(random.Random(7))
    records = _records(units)

    async def store(part: list[dict]) -> None:
        stored = await client.post(url(agent, "performance"), json=part, headers=owner.headers)
        assert stored.status_code == 201, stored.text

    if order == "records first":
        await store(records)
    await _send(client, _events(units, "first"))
    if order == "interleaved":
        await store(records[::2])
    await _send(client, _events(units, "after"))
    if order == "interleaved":
        await store(records[1::2])
    if order == "events first":
        await store(records)

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    found = response.json()[0]["variants"][1]["metrics"]["cost-per-signup"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.frequentist.tests import TwoSidedTTest
    control, treatment = _gbstats(units, "control"), _gbstats(units, "hot")
    expected = TwoSidedTTest(control, treatment).compute_result()
    assert found["role"] == "primary"
    assert found["aggregation"] == "ratio"
    assert found["control_mean"] == pytest.approx(control.mean, abs=1e-9)
    assert found["treatment_mean"] == pytest.approx(treatment.mean, abs=1e-9)
    assert found["relative_lift"] == pytest.approx(expected.expected, abs=1e-9)
    assert found["frequentist"]["p_value"] == pytest.approx(expected.p_value, abs=1e-9)
    assert found["frequentist"]["ci"] == pytest.approx(expected.ci, abs=1e-9)
    assert found["relative_lift"] > 0.2  # the treatment's calls cost half as much again


async def test_concurrent_writers_of_both_sides_keep_the_products_exact(
    client: httpx.AsyncClient, sessionmaker, owner, agent, bootstrap_headers
):
    """Events and records of the same units written at once from separate transactions: each
    side's writer locks the unit's ratio row, so no product of the two sides is lost."""
    await _setup(client, owner, agent, bootstrap_headers)
    units = _units(random.Random(3), count=60)
    now = datetime.now(UTC)

    def events(kind: str, times: int) -> list[dict]:
        return [
            {"experiment_key": KEY, "variant_key": u.arm, "session_id": u.name,
             "event_type": kind, "path": "/", "event_id": None, "value": None,
             "metadata": None, "created_at": now + timedelta(seconds=times)}
            for u in units if u.impression
            for _ in range(1 if kind == "impression" else u.after)
        ]  # fmt: skip

    calls = [
        {"experiment_key": KEY, "arm_key": u.arm, "unit_id": u.name, "cost": cost}
        for u in units
        for cost in u.costs
    ]

    async with sessionmaker() as session:
        ratios = await definitions.cross_ratios(session)

    async def write(part: list[dict], side: str) -> None:
        async with sessionmaker() as session:
            if side == "events":
                await tallies.record(session, part, frozenset({"signup"}), ratios=ratios)
            else:
                await tallies.record_calls(session, part, ratios)
            await session.commit()

    await write(events("impression", 0), "events")  # a signup counts once its unit is exposed
    signups = events("signup", 1)
    writes = [write(signups[i::4], "events") for i in range(4)]
    writes += [write(calls[i::4], "calls") for i in range(4)]
    await asyncio.gather(*writes)

    async with sessionmaker() as session:
        rows = await session.execute(
            select(MetricTotals.variant_key, MetricTotals.term, MetricTotals.value).where(
                MetricTotals.term.like(f"{tallies.RATIO}%")
            )
        )
        terms = {(arm, term.rsplit(":", 1)[1]): value for arm, term, value in rows.all()}
    for arm in ("control", "hot"):
        ours = _gbstats(units, arm)
        assert terms[(arm, "units")] == ours.n
        assert terms[(arm, "v")] == pytest.approx(ours.m_statistic.sum, abs=1e-9)
        assert terms[(arm, "n")] == pytest.approx(ours.d_statistic.sum, abs=1e-9)
        assert terms[(arm, "vv")] == pytest.approx(ours.m_statistic.sum_squares, abs=1e-9)
        assert terms[(arm, "nn")] == pytest.approx(ours.d_statistic.sum_squares, abs=1e-9)
        assert terms[(arm, "nv")] == pytest.approx(ours.m_d_sum_of_products, abs=1e-9)


SIDE = '{"kind": "event" or "performance", "source": ...}'


@pytest.mark.parametrize(
    ("denominator", "loc", "said"),
    [
        ({"kind": "performance", "source": "revenue"}, ["denominator", "source"], "one of cost"),
        ({"kind": "browser", "source": "signup"}, ["denominator", "kind"], "'event' or 'perf"),
        ({"kind": "perf", "source": "cost"}, ["denominator", "kind"], "'event' or 'performance'"),
        ({"source": "signup"}, ["denominator", "kind"], "Field required"),
        (
            {"kind": "event", "source": "Not A Slug"},
            ["denominator", "source"],
            "lowercase letters and digits",
        ),
        ("Not A Slug", ["denominator"], "lowercase letters and digits"),
        (5, ["denominator"], SIDE),
        (["signup"], ["denominator"], SIDE),
        # A performance metric's own denominator counts calls, not events.
        ("signup", ["denominator"], "divides the calls' 'cost' by the number of calls"),
    ],
)
async def test_a_bad_denominator_is_one_422_naming_the_field(
    client: httpx.AsyncClient, bootstrap_headers, denominator, loc: list[str], said: str
):
    body = METRIC | {"denominator": denominator}

    response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", *loc]
    assert said in problem["msg"]
    assert "events' values" not in problem["msg"]


async def test_a_metric_read_back_is_created_again_as_it_reads(
    client: httpx.AsyncClient, bootstrap_headers
):
    """What a metric's GET gives, less what the server sets (id, creation time), defines the
    same metric again: ``denominator_kind`` names the kind of a denominator given by name."""
    plain = METRIC | {"name": "cost-per-call", "denominator": "cost"}
    for body in (METRIC, plain):
        created = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)
        assert created.status_code == 201, created.text
        metric = await client.get(f"/api/admin/metrics/{body['name']}", headers=bootstrap_headers)
        read = {k: v for k, v in metric.json().items() if k not in ("id", "created_at")}
        again = await client.post(
            "/api/admin/metrics", json=read | {"name": "again"}, headers=bootstrap_headers
        )
        assert again.status_code == 201, again.text
        same = {k: v for k, v in again.json().items() if k not in ("id", "created_at")}
        assert same == read | {"name": "again"}
        deleted = await client.delete("/api/admin/metrics/again", headers=bootstrap_headers)
        assert deleted.status_code == 204, deleted.text
    contradicted = METRIC | {"denominator_kind": "performance"}
    refused = await client.post("/api/admin/metrics", json=contradicted, headers=bootstrap_headers)
    assert refused.status_code == 422
    assert refused.json()["detail"][0]["loc"] == ["body", "denominator_kind"]
    alone = {k: v for k, v in METRIC.items() if k != "denominator"} | {"denominator_kind": "event"}
    refused = await client.post("/api/admin/metrics", json=alone, headers=bootstrap_headers)
    assert refused.status_code == 422


async def test_a_denominator_naming_the_metrics_own_source_is_the_plain_ratio(
    client: httpx.AsyncClient, bootstrap_headers
):
    body = METRIC | {"denominator": {"kind": "performance", "source": "cost"}}

    response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)

    assert response.status_code == 201, response.text
    assert response.json()["denominator"] == "cost"
    assert response.json()["denominator_kind"] is None


async def test_the_results_page_shows_the_cross_source_ratio(
    client: httpx.AsyncClient,
    owner,
    agent,
    bootstrap_headers,
    ui_admin: UiClient,  # noqa: F811
):
    await _setup(client, owner, agent, bootstrap_headers)
    units = _units(random.Random(11), count=40)
    await _send(client, _events(units, "first") + _events(units, "after"))
    records = _records(units)
    stored = await client.post(url(agent, "performance"), json=records, headers=owner.headers)
    assert stored.status_code == 201, stored.text
    control = _gbstats(units, "control")

    page = await ui_admin.get(f"/ui/online/{KEY}")

    assert page.status_code == 200
    assert "cost-per-signup" in page.text
    assert f"{control.mean:.3g}" in page.text


async def _overlapping_units(
    client: httpx.AsyncClient, owner, agent, resolve: bool = False
) -> tuple[list[str], dict[str, str]]:
    """Units 0-99 only shown an impression, 100-199 shown one and served two calls each,
    200-299 only served calls; each unit's arm (its resolved config's, with ``resolve``)."""
    names = [f"visitor-{i}" for i in range(300)]
    arms = {}
    for name in names:
        if resolve:
            found = await client.get(
                url(agent, "config"), params={"unit_id": name}, headers=owner.headers
            )
            arms[name] = found.json()["experiment"]["variant_key"]
        else:
            arms[name] = ["control", "hot"][assign(name, KEY, [50, 50])]  # type: ignore[index]
    impressions = [
        {"experiment_key": KEY, "variant_key": arms[u], "session_id": u, "path": "/",
         "event_name": "impression"}
        for u in names[:200]
    ]  # fmt: skip
    await _send(client, impressions)
    calls = [{"unit_id": u, "cost": 0.01} for u in names[100:]] * 2
    stored = await client.post(url(agent, "performance"), json=calls, headers=owner.headers)
    assert stored.status_code == 201, stored.text
    return names, arms


async def test_the_health_counts_the_units_a_cross_source_primary_counts(
    client: httpx.AsyncClient, sessionmaker, owner, agent, bootstrap_headers
):
    """The primary is cost per signup: its units are those exposed or served, each once, so
    the health's units, SRM and power count every one of the 300 units (an impression alone,
    calls alone, or both), not only those served."""
    await _setup(client, owner, agent, bootstrap_headers)
    names, arms = await _overlapping_units(client, owner, agent)
    per_arm = [sum(1 for u in names if arms[u] == arm) for arm in ("control", "hot")]

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    health = response.json()[0]["health"]
    assert health["units"] == "units exposed or served"
    assert health["units_per_arm"] == per_arm
    assert health["srm_p_value"] == pytest.approx(stats.srm_p_value(per_arm, [50, 50]))
    assert health["enough_data"] is (min(per_arm) >= 100)
    power = await client.get(
        "/api/v1/experiments/power",
        params={"experiment_key": KEY, "lift": 0.05},
        headers=bootstrap_headers,
    )
    assert power.status_code == 200, power.text
    assert power.json()["units_per_arm"] == min(per_arm)
    async with sessionmaker() as session:
        experiment = await service.get_experiment(session, KEY)
        summary = (await results.health_summaries(session, [experiment]))[KEY]
    assert summary.units == "units exposed or served"
    assert summary.sessions == 300
    assert "300 units exposed or served" in summary.line


async def test_a_bandit_on_a_cross_source_primary_schedules_by_its_units(
    client: httpx.AsyncClient, sessionmaker, owner, agent, bootstrap_headers
):
    """Due every 250 units: the 200 units served alone would not be, the 300 units exposed
    or served are, and the weight history records 300."""
    created = await client.post("/api/admin/metrics", json=METRIC, headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    bandit = {"every_exposures": 250, "every_seconds": 3600, "floor": 0.05}
    await _experiment(
        client, bootstrap_headers, hot["id"], primary_metric=METRIC["name"], type="bandit",
        bandit=bandit,
    )  # fmt: skip
    await _overlapping_units(client, owner, agent, resolve=True)

    async with sessionmaker() as session:
        experiment = await service.get_experiment(session, KEY)
        assert await history.exposed_total(session, experiment) == 300
        assert await bandits.due(session, experiment, datetime.now(UTC)) == 300
        change = await history.record(session, experiment, "bandit")
        await session.commit()
    assert change.exposed == 300
    response = await client.get(RESULTS, headers=bootstrap_headers)
    assert response.json()[0]["traffic"]["history"][-1]["exposed"] == 300
