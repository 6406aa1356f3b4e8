"""Guardrails that act: an arm past its threshold is stopped by the server's upkeep, its units
are served the control, the stop is audited and shown, and resuming it by hand undoes it."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import httpx
import pytest
from sqlalchemy import select, update

from promptlooper.online import tallies, upkeep
from promptlooper.online.models import ArmEvent, ExperimentEvent, OnlineExperiment
from tests.factories import COST_GUARD
from tests.online.conftest import BROWSER, event

EXPERIMENT = "/api/admin/experiments/homepage_hero_test"
RESULTS = "/api/v1/experiments/results?experiment_key=homepage_hero_test"
COST = {
    "name": "cost-per-call",
    "source": "llm_call",
    "aggregation": "ratio",
    "denominator": "llm_call",
    "direction": "lower",
}
SUCCESS = {"name": "answered", "source": "answer", "aggregation": "proportion"}
TRACKED = frozenset({"llm_call", "answer"})


async def _guard(client: httpx.AsyncClient, headers: dict, **changes) -> httpx.Response:
    for metric in (COST, SUCCESS):
        await client.post("/api/admin/metrics", json=metric, headers=headers)
    experiment = (await client.get(EXPERIMENT, headers=headers)).json()
    body = experiment | COST_GUARD
    return await client.put(EXPERIMENT, json=body | changes, headers=headers)


async def store(sessionmaker, events: list[dict]) -> None:
    """Store events as ingestion does, with the defined metrics' running totals."""
    now = datetime.now(UTC)
    defaults = {"path": "/", "event_id": None, "value": None, "metadata": None, "created_at": now}
    async with sessionmaker() as session:
        await tallies.record(session, [defaults | e for e in events], TRACKED)
        await session.commit()


def _traffic(units: int, costs: dict[str, float]) -> list[dict]:
    """Per arm, ``units`` exposed units each making three LLM calls around the arm's cost."""
    rng = random.Random(7)
    events = []
    for variant, cost in costs.items():
        for index in range(units):
            unit = {"variant_key": variant, "session_id": f"{variant}-{index}"}
            events.append(
                {"experiment_key": "homepage_hero_test", "event_type": "impression"} | unit
            )
            for _ in range(3):
                value = cost * rng.uniform(0.7, 1.3)
                events.append(
                    {
                        "experiment_key": "homepage_hero_test",
                        "event_type": "llm_call",
                        "value": value,
                    }
                    | unit
                )
    return events


async def _unit_in(client: httpx.AsyncClient, variant: str) -> str:
    for index in range(200):
        unit = f"visitor-{index}"
        found = await client.get(
            "/api/experiments/homepage_hero_test/assignment", params={"unit_id": unit}
        )
        if found.json()["variant_key"] == variant:
            return unit
    raise AssertionError(f"no unit hashes to {variant}")


async def _assigned(client: httpx.AsyncClient, unit: str) -> str | None:
    found = await client.get(
        "/api/experiments/homepage_hero_test/assignment", params={"unit_id": unit}
    )
    return found.json()["variant_key"]


async def test_guardrail_stops_an_expensive_arm_and_resume_undoes_it(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    assert (await _guard(client, bootstrap_headers)).status_code == 200
    unit = await _unit_in(client, "tiny_gang_social_proof")
    # The treatment costs twice as much per call: far past +20 %.
    await store(sessionmaker, _traffic(300, {"control": 1.0, "tiny_gang_social_proof": 2.0}))

    await upkeep.run_once(sessionmaker)

    assert await _assigned(client, unit) == "control"
    public = (await client.get("/api/experiments")).json()
    hero = next(e for e in public if e["experiment_key"] == "homepage_hero_test")
    assert hero["stopped_arms"] == ["tiny_gang_social_proof"]
    async with sessionmaker() as session:
        (audit,) = await session.scalars(select(ArmEvent))
    assert (audit.action, audit.variant_key, audit.metric, audit.actor) == (
        "stopped",
        "tiny_gang_social_proof",
        "cost-per-call",
        "guardrail",
    )
    assert audit.details["ci"][0] > 0.2
    assert audit.details["lift"] == pytest.approx(1.0, abs=0.1)
    found = (await client.get(RESULTS, headers=bootstrap_headers)).json()[0]
    stopped = found["guardrails"]["stopped_arms"]["tiny_gang_social_proof"]
    assert stopped["metric"] == "cost-per-call"
    assert stopped["at"]
    assert found["traffic"]["shares"] == {"control": 1.0, "tiny_gang_social_proof": 0.0}
    assert found["traffic"]["history"] == []  # a stop moves no unit to another arm

    resume = "/api/admin/experiments/homepage_hero_test/arms/tiny_gang_social_proof/resume"
    assert (await client.post(resume)).status_code == 401
    resumed = await client.post(resume, headers=bootstrap_headers)
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["action"] == "resumed"
    assert await _assigned(client, unit) == "tiny_gang_social_proof"
    # A person overruled the guardrail: the next check leaves the arm running.
    await upkeep.run_once(sessionmaker)
    assert await _assigned(client, unit) == "tiny_gang_social_proof"
    again = await client.post(resume, headers=bootstrap_headers)
    assert again.status_code == 409
    found = (await client.get(RESULTS, headers=bootstrap_headers)).json()[0]
    assert [e["action"] for e in found["guardrails"]["events"]] == ["stopped", "resumed"]
    # Overruled, the arm is still past its threshold, and the results say so.
    breaching = found["guardrails"]["breaching"]["tiny_gang_social_proof"]
    assert breaching["metric"] == "cost-per-call"
    assert breaching["ci"][0] > 0.2


async def test_an_arm_within_its_guardrail_or_without_auto_stop_keeps_running(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    assert (await _guard(client, bootstrap_headers, auto_stop=False)).status_code == 200
    await store(sessionmaker, _traffic(300, {"control": 1.0, "tiny_gang_social_proof": 2.0}))
    await upkeep.run_once(sessionmaker)
    experiment = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    assert experiment["stopped_arms"] == []
    found = (await client.get(RESULTS, headers=bootstrap_headers)).json()[0]
    assert list(found["guardrails"]["breaching"]) == ["tiny_gang_social_proof"]
    # No conversions: the two built-in comparisons test nothing, so the family holds the
    # guardrail's one test, and its adjusted p-value is its own.
    assert found["multiplicity"] == {"tests": 1, "comparisons": 3, "correction": "holm"}
    (treatment,) = found["variants"][1:]
    assert all("error" in block for block in treatment["stats"].values())
    cost = treatment["metrics"]["cost-per-call"]["frequentist"]
    assert cost["p_value_adjusted"] == cost["p_value"]
    # Auto-stop on, but a rise of 100 % allowed: the arm is within its guardrail.
    changed = experiment | {
        "auto_stop": True,
        "guardrail_thresholds": {"cost-per-call": {"threshold": 2.0}},
    }
    assert (await client.put(EXPERIMENT, json=changed, headers=bootstrap_headers)).is_success
    await upkeep.run_once(sessionmaker)
    experiment = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    assert experiment["stopped_arms"] == []
    found = (await client.get(RESULTS, headers=bootstrap_headers)).json()[0]
    assert found["guardrails"]["breaching"] == {}


THRESHOLDS = ["body", "guardrail_thresholds"]


@pytest.mark.parametrize(
    ("changes", "loc", "msg"),
    [
        (
            {"guardrail_thresholds": {"cost-per-call": {"threshold": -0.2}}},
            [*THRESHOLDS, "cost-per-call", "threshold"],
            "'cost-per-call' is better lower, so harm is a rise: give a positive threshold "
            "(e.g. 0.2), not -0.2",
        ),
        (
            {
                "guardrail_metrics": ["answered"],
                "guardrail_thresholds": {"answered": {"threshold": 0.02, "scale": "absolute"}},
            },
            [*THRESHOLDS, "answered", "threshold"],
            "'answered' is better higher, so harm is a fall: give a negative threshold "
            "(e.g. -0.02), not 0.02",
        ),
        (
            {"guardrail_thresholds": {"answered": {"threshold": -0.02}}},
            [*THRESHOLDS, "answered"],
            "guardrail_thresholds.answered: not one of guardrail_metrics; add it there",
        ),
        (
            {
                "guardrail_metrics": ["conversion"],
                "guardrail_thresholds": {"conversion": {"threshold": -0.1}},
            },
            [*THRESHOLDS, "conversion"],
            "a threshold needs a defined metric; define 'conversion' first",
        ),
        (
            {"guardrail_thresholds": {"cost-per-call": {"threshold": 1e308}}},
            [*THRESHOLDS, "cost-per-call", "threshold"],
            "guardrail_thresholds.cost-per-call.threshold: a relative threshold is at most 10 "
            "(1000 %) either way, not 1e+308; 0.2 is 20 %",
        ),
        (
            {
                "guardrail_metrics": ["answered"],
                "guardrail_thresholds": {"answered": {"threshold": -1e16, "scale": "absolute"}},
            },
            [*THRESHOLDS, "answered", "threshold"],
            "guardrail_thresholds.answered.threshold: an absolute threshold is at most 1e+15 "
            "either way (the largest amount an event carries), not -1e+16",
        ),
        (
            {"guardrail_metrics": ["cost-per-call", "cost-per-call"]},
            ["body", "guardrail_metrics"],
            "'cost-per-call' is listed twice",
        ),
        (
            {"secondary_metrics": ["answered", "cost-per-call", "answered"]},
            ["body", "secondary_metrics"],
            "'answered' is listed twice",
        ),
    ],
)
async def test_a_threshold_of_the_wrong_sign_or_metric_is_a_422_at_its_field(
    client: httpx.AsyncClient, registry, bootstrap_headers, changes, loc, msg
):
    """Refused by the schema or by the registry (a metric's direction), the 422 has the one
    shape of a validation problem, so a client finds the field in ``loc`` either way."""
    response = await _guard(client, bootstrap_headers, **changes)

    assert response.status_code == 422, response.text
    assert response.json()["detail"] == [{"loc": loc, "msg": msg, "type": "value_error"}]
    assert (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()["auto_stop"] is False


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"guardrail_thresholds": {}}, "auto_stop"),  # on, with nothing to stop an arm on
        ({"auto_stop": "yes"}, "auto_stop"),
        ({"guardrail_thresholds": {"cost-per-call": {"threshold": "0.2"}}}, "threshold"),
    ],
)
async def test_auto_stop_needs_a_threshold_and_neither_takes_text(
    client: httpx.AsyncClient, registry, bootstrap_headers, changes, field
):
    response = await _guard(client, bootstrap_headers, **changes)

    assert response.status_code == 422, response.text
    assert field in response.json()["detail"][0]["loc"]
    assert (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()["auto_stop"] is False


async def test_a_threshold_outside_guardrail_metrics_is_located_at_its_field(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    rules = {"cost-per-call": {"threshold": 0.2}, "answered": {"threshold": -0.1}}

    response = await _guard(client, bootstrap_headers, guardrail_thresholds=rules)

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "guardrail_thresholds", "answered"]
    assert problem["msg"].endswith(
        "guardrail_thresholds.answered: not one of guardrail_metrics; add it there"
    )


async def test_resuming_an_arm_needs_an_admin_and_a_known_arm(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    base = "/api/admin/experiments/homepage_hero_test/arms"
    assert (await client.post(f"{base}/nope/resume", headers=bootstrap_headers)).status_code == 404
    assert (
        await client.post(f"{base}/tiny_gang_social_proof/resume", headers=bootstrap_headers)
    ).status_code == 409


async def _served_control(client: httpx.AsyncClient, sessionmaker, units: list[str]) -> dict:
    """Each unit sends an event naming the control; the arm each was stored under."""
    for unit in units:
        body = event(session_id=unit)
        sent = await client.post("/api/experiments/event", json=body, headers=BROWSER)
        assert sent.json()["accepted"], sent.text
    async with sessionmaker() as session:
        rows = await session.execute(
            select(ExperimentEvent.session_id, ExperimentEvent.variant_key).where(
                ExperimentEvent.session_id.in_(units)
            )
        )
        return dict(rows.all())


async def _stop_arm(app, sessionmaker, **values) -> None:
    """Stop the treatment arm of homepage_hero_test (with ``values``) as the upkeep would,
    and let ingestion see it at once."""
    stopped = {"tiny_gang_social_proof": {"metric": "cost-per-call"}}
    async with sessionmaker() as session:
        await session.execute(
            update(OnlineExperiment)
            .where(OnlineExperiment.experiment_key == "homepage_hero_test")
            .values(stopped_arms=stopped, **values)
        )
        await session.commit()
    app.state.intake.invalidate()


async def test_events_naming_the_control_from_a_stopped_arms_units_count_in_that_arm(
    app, client: httpx.AsyncClient, sessionmaker, registry
):
    treated = await _unit_in(client, "tiny_gang_social_proof")
    control = await _unit_in(client, "control")
    await _stop_arm(app, sessionmaker)
    assert await _assigned(client, treated) == "control"

    # Both report what they were served, as a caller of the assignment API does.
    assert await _served_control(client, sessionmaker, [treated, control]) == {
        treated: "tiny_gang_social_proof",
        control: "control",
    }


async def test_a_bandits_units_count_in_the_arm_the_server_stored(
    app, client: httpx.AsyncClient, sessionmaker, registry
):
    await _stop_arm(app, sessionmaker, type="bandit", weights=[0.0, 1.0])
    given = "given-by-the-server"
    assert await _assigned(client, given) == "control"  # stored: the treatment, served: control
    # A unit the browser script placed in the control (its cookie) was never given an arm by
    # the server: its events stay where they say, whatever a hash would pick now.
    placed = "placed-by-the-browser"
    assert await _served_control(client, sessionmaker, [given, placed]) == {
        given: "tiny_gang_social_proof",
        placed: "control",
    }
