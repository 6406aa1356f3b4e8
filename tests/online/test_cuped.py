"""CUPED in the results: a mean metric adjusted by each unit's value before its first
exposure, from the running totals, agreeing with gbstats on the same units."""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from promptlooper.online.models import PendingEvents
from tests.online.conftest import BROWSER, control_terms, event, store, stored
from tests.web.conftest import UiClient, ui_admin  # noqa: F401 (the results page's admin)

EXPERIMENT = "/api/admin/experiments/homepage_hero_test"
RESULTS = "/api/v1/experiments/results?experiment_key=homepage_hero_test"
ARMS = ("control", "tiny_gang_social_proof")


def _units(rng: random.Random) -> dict[str, list[tuple[list[float], list[float]]]]:
    """Per arm, each unit's purchases before and after its impression: the later ones
    follow the earlier (a big spender stays one), the treatment's are 10 % larger, and some
    units bought nothing before."""
    units = {}
    for arm, factor in zip(ARMS, (1.0, 1.1), strict=True):
        units[arm] = []
        for _ in range(60):
            habit = rng.expovariate(1 / 40)
            before = [round(habit * rng.uniform(0.5, 1.5), 2)] if rng.random() < 0.8 else []
            after = [round(factor * habit * rng.uniform(0.7, 1.3), 2) for _ in range(2)]
            units[arm].append((before, after))
    return units


async def _send(client: httpx.AsyncClient, bodies: list[dict]) -> None:
    response = await client.post("/api/experiments/batch", json={"events": bodies}, headers=BROWSER)
    assert response.status_code == 202, response.text
    assert response.json()["rejected"] == 0, response.text


async def test_a_cuped_metric_is_adjusted_by_the_value_before_exposure_as_gbstats_adjusts_it(
    client: httpx.AsyncClient,
    registry,
    bootstrap_headers,
    ui_admin: UiClient,  # noqa: F811
):
    metric = {"name": "revenue", "source": "purchase", "aggregation": "mean", "cuped": True}
    created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    assert created.json()["cuped"] is True
    experiment = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    updated = await client.put(
        EXPERIMENT, json=experiment | {"primary_metric": "revenue"}, headers=bootstrap_headers
    )
    assert updated.status_code == 200, updated.text
    units = _units(random.Random(23))

    def bodies(phase: str) -> list[dict]:
        found = []
        for arm, arm_units in units.items():
            for index, (before, after) in enumerate(arm_units):
                unit = {"variant_key": arm, "session_id": f"{arm}-{index}"}
                if phase == "impression":
                    found.append(event(**unit, event_name="impression"))
                    continue
                values = before if phase == "before" else after
                found += [event(**unit, event_name="purchase", value=v) for v in values]
        return found

    await _send(client, bodies("before"))
    await _send(client, bodies("impression"))
    after = bodies("after")  # in two writes: a unit already exposed adds to its share
    await _send(client, after[::2])
    await _send(client, after[1::2])

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    revenue = response.json()[0]["variants"][1]["metrics"]["revenue"]
    # The metric is what the unit spent once exposed; its covariate what it spent before.
    control, expected, unadjusted = _agrees_with_gbstats(
        revenue,
        {arm: [(sum(before), sum(after)) for before, after in units[arm]] for arm in ARMS},
    )
    cuped = revenue["cuped"]
    removed = 1 - ((expected.ci[1] - expected.ci[0]) / (unadjusted.ci[1] - unadjusted.ci[0])) ** 2
    assert 0.3 < cuped["variance_removed"] < 1
    assert cuped["variance_removed"] == pytest.approx(removed, abs=0.01)  # dof differ a little

    power = await client.get(
        "/api/v1/experiments/power?experiment_key=homepage_hero_test&lift=0.1",
        headers=bootstrap_headers,
    )
    assert power.status_code == 200, power.text
    assert power.json()["control_mean"] == pytest.approx(control.post_statistic.mean, abs=1e-9)
    assert power.json()["variance"] == pytest.approx(control.variance, rel=1e-9)  # adjusted
    assert power.json()["variance"] < control.post_statistic.variance / 2

    page = await ui_admin.get("/ui/online/homepage_hero_test")
    assert page.status_code == 200
    assert "what each unit did in the 14 days before its first exposure" in page.text
    said = f"removed {cuped['variance_removed'] * 100:.0f} % of the lift's variance"
    assert said in page.text


def _agrees_with_gbstats(
    found: dict[str, Any], units: dict[str, list[tuple[float, float]]]
) -> tuple[Any, Any, Any]:
    """Check a CUPED metric's result against gbstats' regression adjustment over the same
    units, given per arm as (covariate, metric) pairs; returns gbstats' control statistic and
    its adjusted and unadjusted results."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.frequentist.tests import TwoSidedTTest
        from gbstats.models.statistics import (
            RegressionAdjustedStatistic,
            SampleMeanStatistic,
            compute_theta,
        )

    def theirs(arm: str) -> RegressionAdjustedStatistic:
        pre, post = [x for x, _ in units[arm]], [y for _, y in units[arm]]
        n = len(pre)
        return RegressionAdjustedStatistic(
            n=n,
            post_statistic=SampleMeanStatistic(
                n=n, sum=sum(post), sum_squares=sum(x * x for x in post)
            ),
            pre_statistic=SampleMeanStatistic(
                n=n, sum=sum(pre), sum_squares=sum(x * x for x in pre)
            ),
            post_pre_sum_of_products=sum(x * y for x, y in zip(post, pre, strict=True)),
            theta=0,
        )

    control, treatment = theirs(ARMS[0]), theirs(ARMS[1])
    control.theta = treatment.theta = compute_theta(control, treatment)
    expected = TwoSidedTTest(control, treatment).compute_result()
    unadjusted = TwoSidedTTest(control.post_statistic, treatment.post_statistic).compute_result()

    assert found["relative_lift"] == pytest.approx(expected.expected, abs=1e-9)
    assert found["frequentist"]["p_value"] == pytest.approx(expected.p_value, abs=1e-9)
    assert found["frequentist"]["ci"] == pytest.approx(expected.ci, abs=1e-9)
    assert found["control_mean"] == pytest.approx(control.post_statistic.mean, abs=1e-9)
    assert found["treatment_mean"] == pytest.approx(treatment.post_statistic.mean, abs=1e-9)
    assert found["cuped"]["theta"] == pytest.approx(control.theta, abs=1e-9)
    # The adjusted means sit on the metric's scale: centred on the pooled covariate's mean.
    pooled = sum(x for arm in ARMS for x, _ in units[arm]) / sum(len(units[a]) for a in ARMS)
    for key, theirs_ in (("control", control), ("treatment", treatment)):
        centred = theirs_.post_statistic.mean - control.theta * (
            theirs_.pre_statistic.mean - pooled
        )
        assert found["cuped"][f"{key}_mean_adjusted"] == pytest.approx(centred, abs=1e-9)
    assert (
        found["cuped"]["treatment_mean_adjusted"] - found["cuped"]["control_mean_adjusted"]
    ) == pytest.approx(treatment.mean - control.mean, abs=1e-9)
    assert found["cuped"]["unadjusted_relative_lift"] == pytest.approx(
        unadjusted.expected, abs=1e-9
    )
    return control, expected, unadjusted


async def test_only_what_a_unit_sent_within_the_window_before_exposure_is_its_covariate(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    metric = {"name": "revenue", "source": "purchase", "aggregation": "mean", "cuped": True,
              "cuped_window_days": 2}  # fmt: skip
    created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    assert created.json()["cuped_window_days"] == 2
    experiment = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    updated = await client.put(
        EXPERIMENT, json=experiment | {"primary_metric": "revenue"}, headers=bootstrap_headers
    )
    assert updated.status_code == 200, updated.text
    rng = random.Random(5)
    exposure = datetime.now(UTC) - timedelta(hours=1)
    # Each unit's purchases 1 day before its impression (in the window), 4 and 6 days before
    # (outside it: a habit that old is not the covariate), and after it.
    units: dict[str, list[tuple[float, float]]] = {}
    early, impressions, late = [], [], []
    for arm, factor in zip(ARMS, (1.0, 1.1), strict=True):
        units[arm] = []
        for index in range(50):
            unit = {"variant_key": arm, "session_id": f"{arm}-{index}"}
            habit = rng.expovariate(1 / 40)
            inside = round(habit * rng.uniform(0.5, 1.5), 2)
            outside = [round(rng.expovariate(1 / 40), 2) for _ in range(2)]
            after = round(factor * habit * rng.uniform(0.7, 1.3), 2)
            for days, value in ((1, inside), (4, outside[0]), (6, outside[1])):
                moment = exposure - timedelta(days=days)
                early.append(event(**unit, event_name="purchase", value=value,
                                   timestamp=moment.isoformat()))  # fmt: skip
            impressions.append(event(**unit, event_name="impression",
                                     timestamp=exposure.isoformat()))  # fmt: skip
            late.append(event(**unit, event_name="purchase", value=after))
            units[arm].append((inside, after))
    # Some earlier purchases are sent before the impression, the others arrive late.
    await _send(client, early[::2])
    await _send(client, impressions)
    await _send(client, early[1::2] + late)

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    revenue = response.json()[0]["variants"][1]["metrics"]["revenue"]
    _agrees_with_gbstats(revenue, units)
    assert revenue["cuped"]["window_days"] == 2


async def test_the_window_moves_with_each_units_exposure_and_events_are_judged_once(
    sessionmaker, registry
):
    start = datetime(2026, 11, 1, tzinfo=UTC)

    def at(session_id: str, kind: str, day: float, value: float | None = None) -> dict:
        return stored(session_id, kind, value, created_at=start + timedelta(days=day))

    async def write(*events: dict) -> None:
        windows = {"purchase": frozenset({7, 14})}
        await store(sessionmaker, list(events), frozenset({"purchase"}), windows)

    # a (exposed on day 20): waits with purchases on days 3 (outside both windows) and 10
    # (inside 14 days); then purchases on day 21 (the metric), and late ones from days 15
    # (inside both) and 2 (before exposure, outside both: in neither the metric nor a
    # covariate).
    await write(at("a", "purchase", 3, 1.0), at("a", "purchase", 10, 2.0))
    await write(at("a", "impression", 20))
    await write(at("a", "purchase", 21, 5.0))
    await write(at("a", "purchase", 15, 4.0), at("a", "purchase", 2, 8.0))
    # b: purchases on days 8 and 18 in the write of its impression (day 20), then day 22.
    await write(at("b", "purchase", 8, 16.0), at("b", "impression", 20),
                at("b", "purchase", 18, 32.0))  # fmt: skip
    await write(at("b", "purchase", 22, 3.0))
    # c: waits with a purchase on day 9, exposed on day 20 (14 days: inside; 7: outside); an
    # impression from day 10 arrives late: the day-9 purchase stays judged against day 20,
    # what is stored from then on is judged against day 10 (day 5: inside both windows;
    # day 12: the metric).
    await write(at("c", "purchase", 9, 64.0))
    await write(at("c", "impression", 20))
    await write(at("c", "impression", 10))
    await write(at("c", "purchase", 5, 128.0), at("c", "purchase", 12, 256.0))
    # d: never exposed, its purchase waits.
    await write(at("d", "purchase", 19, 512.0))

    terms = await control_terms(sessionmaker)
    post = {"a": 5.0, "b": 3.0, "c": 256.0}
    covariates = {7: {"a": 4.0, "b": 32.0, "c": 128.0}, 14: {"a": 6.0, "b": 48.0, "c": 192.0}}
    assert terms["purchase:v"] == sum(post.values())
    for days, pre in covariates.items():
        assert terms[f"purchase:p{days}"] == sum(pre.values()), days
        assert terms[f"purchase:pp{days}"] == sum(x * x for x in pre.values()), days
        assert terms[f"purchase:vp{days}"] == sum(post[u] * pre[u] for u in pre), days
    async with sessionmaker() as session:
        waiting = await session.scalars(select(PendingEvents.session_id))
        assert list(waiting) == ["d"]  # the exposed units' waiting events were judged


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"cuped_window_days": 7}, "only a CUPED metric"),
        ({"cuped": True, "cuped_window_days": 0}, "greater than or equal to 1"),
        ({"cuped": True, "cuped_window_days": -3}, "greater than or equal to 1"),
        ({"cuped": True, "cuped_window_days": 366}, "less than or equal to 365"),
        ({"cuped": True, "cuped_window_days": 1.5}, "integer"),
        ({"cuped": True, "cuped_window_days": "14"}, "integer"),
        ({"cuped": True, "cuped_window_days": True}, "integer"),
    ],
)
async def test_a_bad_cuped_window_is_422_naming_the_field(
    client: httpx.AsyncClient, registry, bootstrap_headers, body, message
):
    metric = {"name": "x", "source": "purchase", "aggregation": "mean"} | body
    response = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    assert "cuped_window_days" in response.text
    assert message in response.text


async def test_a_cuped_metric_has_a_14_day_window_unless_it_names_one(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    metric = {"name": "x", "source": "purchase", "aggregation": "mean", "cuped": True}
    created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    plain = {"name": "y", "source": "purchase", "aggregation": "mean"}
    other = await client.post("/api/admin/metrics", json=plain, headers=bootstrap_headers)

    assert created.status_code == 201, created.text
    assert created.json()["cuped_window_days"] == 14
    assert other.json()["cuped_window_days"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"name": "x", "source": "signup", "aggregation": "proportion", "cuped": True},
        {
            "name": "x",
            "source": "purchase",
            "aggregation": "ratio",
            "denominator": "purchase",
            "cuped": True,
        },
        {
            "name": "x",
            "kind": "performance",
            "source": "cost",
            "aggregation": "mean",
            "cuped": True,
        },
    ],
)
async def test_cuped_on_anything_but_a_mean_of_events_is_422_naming_the_field(
    client: httpx.AsyncClient, registry, bootstrap_headers, body
):
    response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    assert "cuped" in response.text


async def test_what_a_unit_sent_before_its_impression_in_the_same_write_is_its_covariate(
    sessionmaker, registry
):
    start = datetime.now(UTC) - timedelta(minutes=10)

    def at(session_id: str, kind: str, minute: int, value: float | None = None) -> dict:
        return stored(session_id, kind, value, created_at=start + timedelta(minutes=minute))

    async def write(events: list[dict]) -> None:
        await store(sessionmaker, events, frozenset({"purchase"}), {"purchase": frozenset({14})})

    # a: 5 before its impression in an earlier write, 7 before it in the same write, then 11;
    # b: exposed with nothing before, then 3; c: first seen in the write that exposes it, 4
    # before its impression and 6 after.
    await write([at("a", "purchase", 0, 5.0)])
    await write([at("a", "purchase", 1, 7.0), at("a", "impression", 2),
                 at("a", "purchase", 3, 11.0), at("b", "impression", 2),
                 at("c", "purchase", 1, 4.0), at("c", "impression", 2),
                 at("c", "purchase", 3, 6.0)])  # fmt: skip
    await write([at("b", "purchase", 4, 3.0), at("a", "purchase", 5, 2.0)])

    terms = await control_terms(sessionmaker)
    # The metric counts only what came from the impression on.
    pre, post = {"a": 12.0, "b": 0.0, "c": 4.0}, {"a": 13.0, "b": 3.0, "c": 6.0}
    assert terms["purchase:p14"] == sum(pre.values())
    assert terms["purchase:pp14"] == sum(v * v for v in pre.values())
    assert terms["purchase:vp14"] == sum(post[u] * pre[u] for u in pre)
    assert terms["purchase:v"] == sum(post.values())
    assert terms["purchase:n"] == 2 + 1 + 1
    assert terms["purchase:units"] == 3
