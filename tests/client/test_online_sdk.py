"""Online experiments through the SDK: definitions, assignment, events queued in the
background and flushed on close, results, and calls logged for a resolved unit."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import select

from promptlooper.client import AsyncClient, Client, ConflictError, NotFoundError, ValidationError
from promptlooper.client.events import ATTEMPTS
from promptlooper.online import upkeep
from promptlooper.online.assignment import assign
from promptlooper.variants.models import PerformanceRecord
from tests.client.conftest import Switch
from tests.conftest import BOOTSTRAP_KEY
from tests.factories import Actor, even_arms
from tests.online.conftest import registry  # noqa: F401 (fixture)

DEFINITION = {
    "name": "Checkout copy",
    "cookie_name": "exp_checkout",
    "primary_metric": "revenue",
    "variants": even_arms("bold"),
}


async def test_an_experiment_end_to_end_with_the_blocking_client_against_a_live_server(
    live_url: str,
):
    rng = random.Random(3)

    def scenario() -> tuple:
        with Client(live_url, api_key=BOOTSTRAP_KEY) as client:
            metric = client.online.define_metric(
                "revenue", source="purchase", aggregation="mean", cuped=True, cuped_window_days=7
            )
            created = client.online.create("checkout_copy", DEFINITION)
            arms = {}
            for index in range(80):
                unit = f"user-{index}"
                arms[unit] = client.online.assign("checkout_copy", unit)
                spend = rng.expovariate(1 / 30)
                # Spend before the unit sees the page, its impression, then spend after.
                client.online.track("checkout_copy", arms[unit], unit, "purchase", value=spend)
            for unit, arm in arms.items():
                client.online.track("checkout_copy", arm, unit, "impression")
            for index, (unit, arm) in enumerate(arms.items()):
                value = (1.2 if arm == "bold" else 1.0) * (10 + index % 7)
                client.online.track("checkout_copy", arm, unit, "purchase", value=value)
            client.online.track("checkout_copy", "nope", "user-0", "purchase", value=1.0)
            delivered = client.online.flush()
            verdicts = client.online.send(
                [{"experiment_key": "checkout_copy", "variant_key": "control",
                  "session_id": "user-x", "event_name": "checkout"}]
            )  # fmt: skip
            found = client.online.results("checkout_copy")
            stopped = client.online.update(
                "checkout_copy", client.online.get("checkout_copy") | {"status": "stopped"}
            )
            after_stop = client.online.assign("checkout_copy", "user-1")
            planned = client.online.power(baseline=0.1, units_per_day=1000, days=14)
            return metric, created, arms, delivered, verdicts, found, stopped, after_stop, planned

    (
        metric,
        created,
        arms,
        delivered,
        verdicts,
        found,
        stopped,
        after_stop,
        planned,
    ) = await asyncio.to_thread(scenario)

    assert metric["cuped"] is True
    assert metric["cuped_window_days"] == 7
    assert created["primary_metric"] == "revenue"
    assert set(arms.values()) == {"control", "bold"}
    assert arms == {u: ["control", "bold"][assign(u, "checkout_copy", [50, 50])] for u in arms}  # type: ignore[index]
    assert (delivered.queued, delivered.accepted, delivered.rejected) == (241, 240, 1)
    assert delivered.reasons == {"unknown_variant": 1}
    assert delivered.failed == delivered.pending == 0
    assert verdicts["results"] == [{"accepted": False, "reason": "unknown_event"}]
    (result,) = found
    control, bold = result["variants"]
    assert control["impressions"] + bold["impressions"] == 80
    revenue = bold["metrics"]["revenue"]
    assert revenue["role"] == "primary"
    assert revenue["cuped"]["theta"] != 0
    assert stopped["status"] == "stopped"
    assert after_stop is None
    assert planned["minimum_detectable_lift"] > 0


async def test_resolve_for_a_unit_logs_its_calls_under_its_arm(
    switch: Switch, owner: Actor, sessionmaker
):
    admin = AsyncClient("http://testserver", api_key=BOOTSTRAP_KEY, transport=switch)
    sdk = AsyncClient("http://testserver", api_key=owner.headers["X-Api-Key"], transport=switch)
    async with admin, sdk:
        project = await sdk.projects.create("online")
        agent = await sdk.agents.create(
            "Answerer", project_id=project["id"], model_provider="mock", model_name="m"
        )
        terse = await sdk.variants.clone(agent["id"], "Terse", temperature=0.0)
        await admin.online.define_metric(
            "answer-quality", kind="performance", source="quality", aggregation="mean"
        )
        await admin.online.create(
            "answer_style",
            {
                "name": "Answer style",
                "cookie_name": "exp_style",
                "primary_metric": "answer-quality",
                "variants": even_arms("terse", agent_variant_id=terse["id"]),
            },
        )
        units = [f"user-{i}" for i in range(30)]
        served = {}
        for unit in units:
            served[unit] = await sdk.variants.resolve(agent["id"], unit_id=unit)
            await sdk.variants.log(served[unit], quality=0.9 if unit.endswith("1") else 0.7)
        found = await admin.online.results("answer_style")

    arms = {u: ["control", "terse"][assign(u, "answer_style", [50, 50])] for u in units}  # type: ignore[index]
    for unit, resolved in served.items():
        assert resolved.unit_id == unit
        assert resolved.experiment == {"experiment_key": "answer_style", "variant_key": arms[unit]}
        assert (resolved.variant_id == terse["id"]) is (arms[unit] == "terse")
    async with sessionmaker() as session:
        rows = (await session.execute(select(PerformanceRecord.unit_id, PerformanceRecord.arm_key,
                PerformanceRecord.experiment_key))).all()  # fmt: skip
    assert sorted(rows) == sorted((u, arms[u], "answer_style") for u in units)
    quality = found[0]["variants"][1]["metrics"]["answer-quality"]
    per_arm = {arm: [0.9 if u.endswith("1") else 0.7 for u in units if arms[u] == arm]
               for arm in ("control", "terse")}  # fmt: skip
    assert quality["control_mean"] == pytest.approx(
        sum(per_arm["control"]) / len(per_arm["control"])
    )
    assert quality["treatment_mean"] == pytest.approx(sum(per_arm["terse"]) / len(per_arm["terse"]))


async def test_queued_events_are_sent_on_close_retried_on_a_server_error_and_counted_when_lost(
    switch: Switch,
    registry: list[str],  # noqa: F811
):
    client = AsyncClient("http://testserver", api_key=BOOTSTRAP_KEY, transport=switch)
    async with client:
        switch.fail_with = 503
        await client.online.track("homepage_hero_test", "control", "u1", "cta_click")
        lost = await client.online.flush()
        switch.fail_with = None
        for index in range(5):
            await client.online.track("homepage_hero_test", "control", f"u{index}", "impression")
    # closed: what was queued has been sent
    delivered = client.online.delivery()

    assert switch.statuses[:ATTEMPTS] == [503] * ATTEMPTS
    assert (lost.failed, lost.accepted) == (1, 0)
    assert "503" in (lost.error or "")
    assert (delivered.queued, delivered.accepted, delivered.failed, delivered.pending) == (
        6,
        5,
        1,
        0,
    )
    with pytest.raises(ValidationError):
        await client.online.track("homepage_hero_test", "control", "u1", "x", value=float("nan"))


async def test_resume_arm_serves_a_stopped_arm_again_from_both_clients(live_url: str, sessionmaker):
    guarded = {
        "name": "Answer style",
        "cookie_name": "exp_style",
        "guardrail_metrics": ["cost-per-call"],
        "guardrail_thresholds": {"cost-per-call": {"threshold": 0.2}},
        "auto_stop": True,
        "variants": [
            {"variant_key": "control", "allocation": 50, "is_control": True},
            {"variant_key": "verbose", "allocation": 50},
        ],
    }
    rng = random.Random(5)
    events = []
    for arm, cost in (("control", 1.0), ("verbose", 2.0)):
        for index in range(150):
            unit = {"experiment_key": "answer_style", "variant_key": arm,
                    "session_id": f"{arm}-{index}"}  # fmt: skip
            events.append(unit | {"event_name": "impression"})
            events += [unit | {"event_name": "llm_call", "value": cost * rng.uniform(0.8, 1.2)}
                       for _ in range(3)]  # fmt: skip

    def arrange() -> str:
        with Client(live_url, api_key=BOOTSTRAP_KEY) as client:
            client.online.define_metric(
                "cost-per-call", source="llm_call", aggregation="ratio",
                denominator="llm_call", direction="lower",
            )  # fmt: skip
            client.online.create("answer_style", guarded)
            for start in range(0, len(events), 1000):
                client.online.send(events[start : start + 1000])
            return next(
                unit for unit in (f"user-{i}" for i in range(200))
                if client.online.assign("answer_style", unit) == "verbose"
            )  # fmt: skip

    unit = await asyncio.to_thread(arrange)
    await upkeep.run_once(sessionmaker)

    def resume() -> tuple:
        with Client(live_url, api_key=BOOTSTRAP_KEY) as client:
            stopped = client.online.assign("answer_style", unit)
            event = client.online.resume_arm("answer_style", "verbose")
            return stopped, event, client.online.assign("answer_style", unit)

    stopped, event, served = await asyncio.to_thread(resume)
    assert stopped == "control"
    assert (event["action"], event["variant_key"], event["metric"]) == (
        "resumed", "verbose", "cost-per-call"
    )  # fmt: skip
    assert event["actor"] == "system:bootstrap-admin"
    assert served == "verbose"
    async with AsyncClient(live_url, api_key=BOOTSTRAP_KEY) as client:
        with pytest.raises(ConflictError, match="not stopped"):
            await client.online.resume_arm("answer_style", "verbose")
        with pytest.raises(NotFoundError, match="no arm"):
            await client.online.resume_arm("answer_style", "nope")
        found = (await client.online.results("answer_style"))[0]
    assert [e["action"] for e in found["guardrails"]["events"]] == ["stopped", "resumed"]


async def test_a_refused_field_reads_as_field_and_message_from_the_sdk(live_url: str):
    """A 422 from the schema and one from the registry (a threshold against the metric's
    direction) come in the same shape, and the SDK says each as ``field: message``."""
    wrong_sign = {
        "name": "Answer style",
        "cookie_name": "exp_style",
        "guardrail_metrics": ["cost-per-call"],
        "guardrail_thresholds": {"cost-per-call": {"threshold": -0.2}},
        "variants": even_arms("verbose"),
    }

    def attempt() -> tuple[str, str]:
        with Client(live_url, api_key=BOOTSTRAP_KEY) as client:
            client.online.define_metric(
                "cost-per-call", source="llm_call", aggregation="ratio",
                denominator="llm_call", direction="lower",
            )  # fmt: skip
            refused = []
            for key, body in (("answer_style", wrong_sign), ("Answer Style", DEFINITION)):
                with pytest.raises(ValidationError) as caught:
                    client.online.create(key, body)
                refused.append(caught.value.detail)
            return refused[0], refused[1]

    sign, key = await asyncio.to_thread(attempt)

    assert sign == (
        "guardrail_thresholds.cost-per-call.threshold: 'cost-per-call' is better lower, so harm "
        "is a rise: give a positive threshold (e.g. 0.2), not -0.2"
    )
    assert key == (
        "experiment_key: must be lowercase letters and digits, words joined by - or _ "
        "(like checkout-button)"
    )
