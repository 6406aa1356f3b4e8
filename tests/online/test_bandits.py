"""Bandits: Thompson sampling moves traffic to the better arm on the server's schedule, units
keep their arm when the weights change, the weights' history is kept and the SRM check
expects the weights that were in force."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import httpx
import numpy as np
import pytest
from sqlalchemy import select

from promptlooper.online import bandits, history, service, tallies, thompson, traffic, upkeep
from promptlooper.online.models import OnlineExperiment
from tests.factories import online_experiment

CREATE = "/api/admin/experiments"
KEY = "answer_bandit"
RESULTS = f"/api/v1/experiments/results?experiment_key={KEY}"
RATES = {"control": 0.05, "better": 0.25}


def _bandit(**changes) -> dict:
    return (
        online_experiment(
            KEY,
            "better",
            cookie_name="pl_answer_bandit",
            type="bandit",
            primary_metric="conversion",
            bandit={"every_exposures": 200, "every_seconds": 3600, "floor": 0.05},
        )
        | changes
    )


async def _assign(client: httpx.AsyncClient, unit: str) -> str | None:
    found = await client.get(f"/api/experiments/{KEY}/assignment", params={"unit_id": unit})
    assert found.status_code == 200, found.text
    return found.json()["variant_key"]


async def _round(sessionmaker, units: list[str], rng: random.Random) -> dict[str, str]:
    """New units assigned as the server assigns them, exposed, converting at their arm's
    rate; then the server's upkeep runs."""
    now = datetime.now(UTC)
    async with sessionmaker() as session:
        experiment = await service.get_experiment(session, KEY)
        arms = await service.served_variants(session, experiment, units)
        events = []
        for unit, arm in arms.items():
            row = {"experiment_key": KEY, "variant_key": arm, "session_id": unit, "path": "/"}
            row |= {"event_id": None, "value": None, "metadata": None, "created_at": now}
            events.append(row | {"event_type": "impression"})
            if rng.random() < RATES[arm]:
                events.append(row | {"event_type": "conversion"})
        await tallies.record(session, events)
        await session.commit()
    await upkeep.run_once(sessionmaker)
    return arms


async def test_a_bandit_shifts_traffic_to_the_better_arm_and_units_keep_their_arm(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    created = await client.post(CREATE, json=_bandit(), headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    early = {f"early-{i}": await _assign(client, f"early-{i}") for i in range(20)}
    assert set(early.values()) == {"control", "better"}
    rng = random.Random(3)
    seen: dict[str, str] = {}
    for index in range(6):
        seen |= await _round(sessionmaker, [f"u{index}-{i}" for i in range(400)], rng)

    experiment = (await client.get(f"{CREATE}/{KEY}", headers=bootstrap_headers)).json()
    control_weight, better_weight = experiment["weights"]
    assert better_weight > 0.8
    assert control_weight >= 0.05
    public = next(
        e for e in (await client.get("/api/experiments")).json() if e["experiment_key"] == KEY
    )
    assert public["weights"] == experiment["weights"]
    # Later rounds gave the better arm most of the new units ...
    last = [arm for unit, arm in seen.items() if unit.startswith("u5-")]
    assert last.count("better") / len(last) > 0.7
    # ... while every unit kept the arm it was first given.
    for unit, arm in early.items():
        assert await _assign(client, unit) == arm
    for unit in ["u0-1", "u0-2", "u0-3", "u1-7"]:
        assert await _assign(client, unit) == seen[unit]

    found = (await client.get(RESULTS, headers=bootstrap_headers)).json()[0]
    history = found["traffic"]["history"]
    assert len(history) >= 5
    assert {c["reason"] for c in history} == {"bandit"}
    assert history[-1]["weights"]["better"] == pytest.approx(better_weight)
    assert [c["exposed"] for c in history] == sorted(c["exposed"] for c in history)
    # Exposures followed the weights in force, so there is no sample-ratio mismatch, although
    # the split is far from the 50/50 allocations.
    assert found["health"]["srm_mismatch"] is False
    exposed = [v["unique_sessions"] for v in found["variants"]]
    assert exposed[1] > 2 * exposed[0]


async def test_weights_wait_for_their_schedule(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    body = _bandit(bandit={"every_exposures": 10_000, "every_seconds": 600, "floor": 0.1})
    assert (await client.post(CREATE, json=body, headers=bootstrap_headers)).status_code == 201
    await _round(sessionmaker, [f"u-{i}" for i in range(300)], random.Random(1))
    async with sessionmaker() as session:
        experiment = await session.scalar(select(OnlineExperiment))
        assert experiment.weights is None
        later = datetime.now(UTC) + timedelta(seconds=601)
        change = await bandits.reweigh(session, experiment, now=later)
        assert change is not None
        assert min(experiment.weights) >= 0.1


def test_thompson_sampling_favours_the_better_arm_above_the_floor():
    rng = np.random.default_rng(0)
    chances = thompson.chance_best(
        [0.10, 0.12, 0.30], [0.09, 0.1056, 0.21], [500, 500, 500], higher_is_better=True, rng=rng
    )
    assert chances is not None
    assert chances[2] > 0.99
    weights = traffic.with_floor(chances, 0.05)
    assert sum(weights) == pytest.approx(1.0)
    assert min(weights) >= 0.05
    assert weights[2] > 0.85
    lower = thompson.chance_best(
        [0.10, 0.30], [0.09, 0.21], [500, 500], higher_is_better=False, rng=rng
    )
    assert lower is not None
    assert lower[0] > 0.99
    assert (
        thompson.chance_best([0.1, 0.2], [0.09, 0.16], [1, 500], higher_is_better=True, rng=rng)
        is None
    )


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"primary_metric": None}, "primary_metric"),
        ({"primary_metric": "cta_click"}, "primary_metric"),
        (
            {
                "bandit": {"floor": 0.4},
                "variants": [
                    {"variant_key": "control", "allocation": 40, "is_control": True},
                    {"variant_key": "b", "allocation": 30},
                    {"variant_key": "c", "allocation": 30},
                ],
            },
            "bandit.floor",
        ),
        ({"type": "ab"}, "bandit"),
    ],
)
async def test_a_bandit_without_a_usable_primary_metric_is_a_422(
    client: httpx.AsyncClient, bootstrap_headers, changes, field
):
    body = {k: v for k, v in (_bandit() | changes).items() if v is not None}
    response = await client.post(CREATE, json=body, headers=bootstrap_headers)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", *field.split(".")]


async def test_a_bandit_that_assigned_units_keeps_its_type_and_learned_weights(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    assert (await client.post(CREATE, json=_bandit(), headers=bootstrap_headers)).status_code == 201
    rng = random.Random(5)
    for index in range(2):
        await _round(sessionmaker, [f"u{index}-{i}" for i in range(400)], rng)
    url = f"{CREATE}/{KEY}"
    experiment = (await client.get(url, headers=bootstrap_headers)).json()
    learned = experiment["weights"]
    assert learned is not None
    edited = {k: v for k, v in experiment.items() if k in _bandit()}

    as_ab = await client.put(
        url, json=edited | {"type": "ab", "bandit": None}, headers=bootstrap_headers
    )
    variants = [v | {"allocation": a} for v, a in zip(edited["variants"], (30, 70), strict=True)]
    reallocated = await client.put(
        url, json=edited | {"variants": variants}, headers=bootstrap_headers
    )
    renamed = await client.put(url, json=edited | {"name": "Renamed"}, headers=bootstrap_headers)

    assert as_ab.status_code == 409, as_ab.text
    assert as_ab.json()["detail"].startswith("type:")
    assert reallocated.status_code == 409, reallocated.text
    assert reallocated.json()["detail"].startswith("variants.0.allocation:")
    assert renamed.status_code == 200, renamed.text
    after = (await client.get(url, headers=bootstrap_headers)).json()
    assert (after["type"], after["weights"]) == ("bandit", learned)
    # A raised floor holds at once, and the arms keep their order.
    schedule = edited["bandit"] | {"floor": 0.3}
    raised = await client.put(url, json=edited | {"bandit": schedule}, headers=bootstrap_headers)
    assert raised.status_code == 200, raised.text
    weights = raised.json()["weights"]
    assert min(weights) == pytest.approx(0.3) or min(weights) > 0.3
    assert sum(weights) == pytest.approx(1.0)
    assert (weights[0] < weights[1]) == (learned[0] < learned[1])


async def test_an_ab_test_that_has_started_does_not_become_a_bandit(
    client: httpx.AsyncClient, bootstrap_headers
):
    """Its units were placed by the hash, not stored: a bandit's moving weights would put them
    in other arms while their earlier events stay under the old one."""
    ab = {k: v for k, v in _bandit().items() if k not in ("type", "bandit")}
    assert (await client.post(CREATE, json=ab, headers=bootstrap_headers)).status_code == 201
    assert await _assign(client, "u-1") is not None
    url = f"{CREATE}/{KEY}"

    as_bandit = await client.put(url, json=_bandit(), headers=bootstrap_headers)

    assert as_bandit.status_code == 409, as_bandit.text
    assert as_bandit.json()["detail"] == (
        f"type: {KEY!r} is an A/B test that has assigned units; as a bandit it would move "
        "them to other arms once its weights change, while their earlier events stay under "
        "the arm they had. Create a new experiment instead"
    )
    assert (await client.get(url, headers=bootstrap_headers)).json()["type"] == "ab"
    # A draft has assigned no unit: it may still become a bandit.
    draft = ab | {"experiment_key": "draft_ab", "cookie_name": "pl_draft", "status": "draft"}
    assert (await client.post(CREATE, json=draft, headers=bootstrap_headers)).status_code == 201
    turned = await client.put(
        f"{CREATE}/draft_ab",
        json=_bandit(**{k: draft[k] for k in ("experiment_key", "cookie_name", "status")}),
        headers=bootstrap_headers,
    )
    assert turned.status_code == 200, turned.text
    assert turned.json()["type"] == "bandit"


def test_a_raised_floor_lifts_the_learned_weights():
    learned = traffic.with_floor([0.02, 0.98], 0.05)

    assert traffic.refloor(learned, 0.05, 0.2) == traffic.with_floor([0.02, 0.98], 0.2)


async def test_a_bandit_without_its_primary_metric_is_located_at_the_field(
    client: httpx.AsyncClient, bootstrap_headers
):
    body = {k: v for k, v in _bandit().items() if k != "primary_metric"}

    response = await client.post(CREATE, json=body, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    assert [p["loc"] for p in response.json()["detail"]] == [["body", "primary_metric"]]


def test_weights_read_as_written():
    assert traffic.with_floor([0.0, 1.0], 0.05) == [0.05, 0.95]
    assert sum(traffic.with_floor([0.3, 0.7], 0.1)) == pytest.approx(1.0)


async def test_a_unit_with_an_impression_and_calls_counts_once_toward_the_schedule(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers
):
    quality = {"name": "quality", "kind": "performance", "source": "quality",
               "aggregation": "mean"}  # fmt: skip
    made = await client.post("/api/admin/metrics", json=quality, headers=bootstrap_headers)
    assert made.status_code == 201, made.text
    body = _bandit(primary_metric="quality")
    assert (await client.post(CREATE, json=body, headers=bootstrap_headers)).status_code == 201
    units = [f"u-{i}" for i in range(30)]
    await _round(sessionmaker, units, random.Random(2))  # each unit exposed by an impression
    async with sessionmaker() as session:
        experiment = await service.get_experiment(session, KEY)
        arms = await service.served_variants(session, experiment, units)
        calls = [{"experiment_key": KEY, "arm_key": arm, "unit_id": unit, "quality": 0.5}
                 for unit, arm in arms.items()]  # fmt: skip
        await tallies.record_calls(session, calls)
        await session.commit()
        # The units the results count for a performance primary metric: served ones, once.
        assert await history.exposed_total(session, experiment) == len(units)
        change = await history.record(session, experiment, "bandit")
    assert change.exposed == len(units)
