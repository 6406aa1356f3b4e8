"""Power and duration: planning an experiment, and the power a running one has reached."""

from __future__ import annotations

import httpx
import pytest

from promptlooper.errors import Invalid
from promptlooper.online import power, stats
from tests.online.conftest import store

POWER = "/api/v1/experiments/power"
LIFT_REFUSED = "must be above -1 and at most 10 (relative, 0.05 = +5 %)"


async def test_planning_gives_the_detectable_lift_and_the_days_a_lift_needs(
    client: httpx.AsyncClient, bootstrap_headers
):
    query = {"baseline": 0.1, "units_per_day": 2000, "days": 14, "lift": 0.05}

    response = await client.get(POWER, params=query, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    per_arm = 1000
    assert body["units_per_arm_per_day"] == per_arm
    mde = body["minimum_detectable_lift"]
    assert stats.power(0.1, 0.09, per_arm * 14, mde) == pytest.approx(0.8)
    needed = body["units_per_arm_needed"]
    assert stats.power(0.1, 0.09, needed, 0.05) >= 0.8 > stats.power(0.1, 0.09, needed - 1, 0.05)
    assert body["days_needed"] == -(-needed // per_arm)
    assert mde > 0.05  # two weeks are too short for +5 %
    assert body["days_needed"] > 14


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"units_per_day": 100, "days": 7}, "baseline"),
        ({"baseline": 0.1, "days": 7}, "units_per_day"),
        ({"baseline": 12.5, "units_per_day": 100, "days": 7}, "variance"),
        ({"baseline": 0.1, "units_per_day": 100}, "days"),
        ({"baseline": 0.1, "units_per_day": -5, "days": 7}, "units_per_day"),
        ({"baseline": 0.1, "units_per_day": 1e308, "days": 14}, "units_per_day"),
        ({"baseline": "NaN", "units_per_day": 100, "days": 7}, "baseline"),
        ({"baseline": "inf", "variance": 1, "units_per_day": 100, "days": 7}, "baseline"),
        ({"baseline": 5, "variance": "NaN", "units_per_day": 100, "days": 7}, "variance"),
        ({"baseline": 0.1, "units_per_day": 100, "lift": "NaN"}, "lift"),
        ({"baseline": 0.1, "units_per_day": 100, "lift": 20}, "lift"),
    ],
)
async def test_a_plan_missing_an_input_is_422_naming_it(
    client: httpx.AsyncClient, bootstrap_headers, query, field
):
    response = await client.get(POWER, params=query, headers=bootstrap_headers)

    assert response.status_code == 422
    detail = response.json()["detail"]
    if isinstance(detail, str):  # the plan's own checks
        assert detail.startswith(f"{field}:")
    else:  # the query's
        assert [problem["loc"] for problem in detail] == [["query", field]]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"baseline": 0.1, "units_per_day": 1e308, "days": 14}, "units_per_day"),
        ({"baseline": float("nan"), "units_per_day": 100, "days": 7}, "baseline"),
        ({"baseline": 5.0, "variance": float("inf"), "units_per_day": 100, "days": 7}, "variance"),
    ],
)
def test_planning_checks_what_every_door_gives_it(query, field):
    with pytest.raises(Invalid, match=f"^{field}:"):
        power.planned(query.pop("baseline"), query.pop("variance", None), **query)


def test_power_stays_finite_at_extreme_scales():
    assert stats.power(1e300, 0.09, 1_000, 0.1) == 1.0
    assert stats.power(1e-300, 1e-10, 1_000, 0.1) == pytest.approx(stats.ALPHA)
    assert stats.power(0.1, 0.09, 1e307, 0.1) == 1.0
    assert stats.minimum_detectable_effect(0.1, 0.09, 1e300) == pytest.approx(0, abs=1e-6)


async def test_a_running_experiment_reports_the_power_reached_and_days_left(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    events = []
    for variant in ("control", "tiny_gang_social_proof"):
        for index in range(400):
            unit = {"experiment_key": "homepage_hero_test", "variant_key": variant}
            unit["session_id"] = f"{variant}-{index}"
            events.append(unit | {"event_type": "impression"})
            if index % 10 == 0:
                events.append(unit | {"event_type": "conversion"})
    await store(sessionmaker, events)

    response = await client.get(
        POWER,
        params={"experiment_key": "homepage_hero_test", "lift": 0.2},
        headers=bootstrap_headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["metric"] == "conversion"
    assert body["units_per_arm"] == 400
    assert body["control_mean"] == pytest.approx(0.1)
    assert body["power_reached"] == pytest.approx(stats.power(0.1, 0.09, 400, 0.2))
    assert body["power_reached"] < 0.8
    assert body["days_running"] == 1
    # 400 units per arm on its one day so far: the rest of what it needs at that rate
    assert body["days_left"] == -(-(body["units_per_arm_needed"] - 400) // 400)
    assert body["reason"] is None
    unknown = await client.get(
        POWER,
        params={"experiment_key": "homepage_hero_test", "metric": "nope"},
        headers=bootstrap_headers,
    )
    assert unknown.status_code == 422
    assert "metric" in unknown.text
    for lift in (-5, 20):  # -500 %, or +20 % typed as 20: refused as in planning
        unmeant = await client.get(
            POWER,
            params={"experiment_key": "homepage_hero_test", "lift": lift},
            headers=bootstrap_headers,
        )
        assert unmeant.status_code == 422
        (problem,) = unmeant.json()["detail"]
        assert (problem["loc"], problem["msg"]) == (["query", "lift"], LIFT_REFUSED)


@pytest.mark.parametrize(
    ("query", "field", "said"),
    [
        ({"experiment_key": "homepage_hero_test", "lift": 0}, "lift", "0 is no change"),
        ({"baseline": 0.1, "units_per_day": 100, "lift": 0}, "lift", "0 is no change"),
        (
            {"experiment_key": "homepage_hero_test", "baseline": 0.1},
            "baseline",
            "plans an experiment; with experiment_key",
        ),
        (
            {"experiment_key": "homepage_hero_test", "units_per_day": 5, "days": 3},
            "units_per_day",
            "plans an experiment; with experiment_key",
        ),
    ],
)
async def test_a_question_power_cannot_answer_is_422_not_an_answer(
    client: httpx.AsyncClient, registry, bootstrap_headers, query, field, said
):
    response = await client.get(POWER, params=query, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["query", field]
    assert said in problem["msg"]


async def test_a_running_experiment_without_an_answer_says_why(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    query = {"experiment_key": "homepage_hero_test", "lift": 0.1}
    before = (await client.get(POWER, params=query, headers=bootstrap_headers)).json()
    assert before["units_per_arm_needed"] is None
    assert before["reason"] == (
        "metric: conversion has no units yet: every arm needs exposed units"
    )
    events = [
        {"experiment_key": "homepage_hero_test", "variant_key": variant,
         "session_id": f"{variant}-{i}", "event_type": "impression"}
        for variant in ("control", "tiny_gang_social_proof")
        for i in range(50)
    ]  # fmt: skip
    await store(sessionmaker, events)

    response = await client.get(POWER, params=query, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    body = response.json()
    # Exposed units, but no conversion: a zero control mean has no relative lift.
    assert (body["control_mean"], body["units_per_arm_needed"], body["days_left"]) == (
        0,
        None,
        None,
    )
    assert body["reason"].startswith("metric: control's conversion is 0 so far")
    assert "non-zero control mean" in body["reason"]
