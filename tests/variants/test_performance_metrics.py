"""Performance records that name their unit count toward the arm it is assigned to, and
performance metrics report them per treatment."""

from __future__ import annotations

import httpx
import pytest

from promptlooper.online import stats
from promptlooper.online.assignment import assign
from tests.online.conftest import BROWSER
from tests.variants.conftest import make_variant
from tests.variants.test_agents_api import url
from tests.variants.test_unit_resolution import _experiment

RESULTS = "/api/v1/experiments/results?experiment_key=extractor_temperature"


async def test_calls_count_toward_the_arm_of_their_unit(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers
):
    metrics = [
        {"name": "cost-per-call", "kind": "performance", "source": "cost",
         "aggregation": "ratio", "denominator": "cost", "direction": "lower"},
        {"name": "quality", "kind": "performance", "source": "quality", "aggregation": "mean"},
        {"name": "any-success", "kind": "performance", "source": "success",
         "aggregation": "proportion"},
    ]  # fmt: skip
    for metric in metrics:
        created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
        assert created.status_code == 201, created.text
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await _experiment(
        client,
        bootstrap_headers,
        hot["id"],
        primary_metric="quality",
        guardrail_metrics=["cost-per-call", "any-success"],
    )
    # Per unit: its calls (cost, quality, success); units hash to their arm.
    records, per_arm = [], {"control": [], "hot": []}
    for index in range(40):
        unit = f"visitor-{index}"
        arm = ["control", "hot"][assign(unit, "extractor_temperature", [50, 50])]  # type: ignore[index]
        calls = [
            {"cost": 0.01 * (1 + index % 3) * (2 if arm == "hot" else 1),
             "quality": 0.5 + 0.01 * ((index * 7 + k) % 40), "success": (index + k) % 4 != 0}
            for k in range(1 + index % 3)
        ]  # fmt: skip
        per_arm[arm].append(calls)
        records += [call | {"unit_id": unit} for call in calls]
    records.append({"cost": 5.0, "quality": 0.0})  # no unit: not in the experiment
    stored = await client.post(url(agent, "performance"), json=records, headers=owner.headers)
    assert stored.status_code == 201, stored.text

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    found = response.json()[0]["variants"][1]["metrics"]
    assert [found[m]["role"] for m in ("quality", "cost-per-call", "any-success")] == [
        "primary",
        "guardrail",
        "guardrail",
    ]

    def units(arm: str, field: str) -> tuple[list[float], list[float]]:
        counts = [float(len(calls)) for calls in per_arm[arm]]
        sums = [float(sum(c[field] for c in calls)) for calls in per_arm[arm]]
        return counts, sums

    def ratio(arm: str) -> stats.Ratio:
        counts, sums = units(arm, "cost")
        n = len(counts)
        return stats.Ratio(
            stats.Moments(n, sum(sums), sum(s * s for s in sums)),
            stats.Moments(n, sum(counts), sum(c * c for c in counts)),
            sum(c * s for c, s in zip(counts, sums, strict=True)),
        )

    def mean(arm: str) -> stats.Moments:
        _, sums = units(arm, "quality")
        return stats.Moments(len(sums), sum(sums), sum(s * s for s in sums))

    expected = stats.compare(ratio("control"), ratio("hot"))
    assert found["cost-per-call"]["relative_lift"] == pytest.approx(expected["relative_lift"])
    assert found["cost-per-call"]["relative_lift"] > 0.5  # hot costs double a call
    assert found["cost-per-call"]["frequentist"]["p_value"] == pytest.approx(
        expected["frequentist"]["p_value"]
    )
    expected = stats.compare(mean("control"), mean("hot"))
    assert found["quality"]["control_mean"] == pytest.approx(expected["control_mean"])
    assert found["quality"]["treatment_mean"] == pytest.approx(expected["treatment_mean"])
    served = sum(1 for calls in per_arm["hot"] if any(c["success"] for c in calls))
    assert found["any-success"]["treatment_mean"] == pytest.approx(served / len(per_arm["hot"]))


async def test_a_performance_metric_measures_a_field_of_the_log(
    client: httpx.AsyncClient, bootstrap_headers
):
    body = {"name": "x", "kind": "performance", "source": "purchase", "aggregation": "mean"}

    response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)

    assert response.status_code == 422
    assert "source" in response.text


async def test_an_experiment_fed_only_by_performance_records_gathers_enough_data(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers
):
    metric = {"name": "quality", "kind": "performance", "source": "quality", "aggregation": "mean"}
    assert (
        await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    ).status_code == 201
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    await _experiment(client, bootstrap_headers, hot["id"], primary_metric="quality")
    arms = {f"visitor-{i}": assign(f"visitor-{i}", "extractor_temperature", [50, 50])
            for i in range(400)}  # fmt: skip
    served = [sum(1 for a in arms.values() if a == arm) for arm in (0, 1)]
    assert min(served) >= 100  # the hash splits 400 units about evenly

    async def health() -> dict:
        response = await client.get(RESULTS, headers=bootstrap_headers)
        assert response.status_code == 200, response.text
        return response.json()[0]["health"]

    units = list(arms)
    first = [{"quality": 0.5 + 0.001 * i, "unit_id": u} for i, u in enumerate(units[:60])]
    assert (
        await client.post(url(agent, "performance"), json=first, headers=owner.headers)
    ).status_code == 201
    early = await health()
    assert early["units"] == "units served"
    assert sum(early["units_per_arm"]) == 60
    assert early["enough_data"] is False

    # Two calls per unit: the units count once each, not the calls; no impression at all.
    rest = [{"quality": 0.5 + 0.001 * (i % 50), "unit_id": u} for i, u in enumerate(units)] * 2
    assert (
        await client.post(url(agent, "performance"), json=rest, headers=owner.headers)
    ).status_code == 201
    found = await health()
    assert found["units_per_arm"] == served
    assert found["enough_data"] is True
    assert found["srm_mismatch"] is False

    power = await client.get(
        "/api/v1/experiments/power",
        params={"experiment_key": "extractor_temperature", "lift": 0.05},
        headers=bootstrap_headers,
    )
    assert power.status_code == 200, power.text
    assert power.json()["units_per_arm"] == min(served)
    assert power.json()["days_running"] == 1
    assert power.json()["days_left"] is not None


@pytest.mark.parametrize("primary", ["quality", "clicked"])
async def test_srm_counts_each_unit_of_the_primary_metric_once_in_its_arm(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers, primary
):
    """Impressions for units 0-199 and two calls each for units 100-299: the units overlap in
    part. SRM counts the units the primary metric is measured on, each once, in the arm it
    was assigned: the units served for a performance metric (an impression adds nothing to
    a unit that has calls, nor makes one that has none count), the sessions an impression
    exposed for an event metric (calls neither)."""
    metrics = [
        {"name": "quality", "kind": "performance", "source": "quality", "aggregation": "mean"},
        {"name": "clicked", "source": "cta_click", "aggregation": "proportion"},
    ]
    for metric in metrics:
        made = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
        assert made.status_code == 201, made.text
    hot = await make_variant(client, owner, agent, name="Hot", temperature=1.2)
    other = "clicked" if primary == "quality" else "quality"
    await _experiment(
        client, bootstrap_headers, hot["id"], primary_metric=primary, secondary_metrics=[other]
    )
    arms = {
        f"visitor-{i}": ["control", "hot"][
            assign(f"visitor-{i}", "extractor_temperature", [50, 50])
        ]  # type: ignore[index]
        for i in range(300)
    }
    units = list(arms)
    impressions = [
        {"experiment_key": "extractor_temperature", "variant_key": arms[u], "session_id": u,
         "path": "/", "event_name": "impression"}
        for u in units[:200]
    ]  # fmt: skip
    sent = await client.post(
        "/api/experiments/batch", json={"events": impressions}, headers=BROWSER
    )
    assert sent.status_code == 202, sent.text
    assert sent.json()["rejected"] == 0, sent.text
    calls = [{"quality": 0.5, "unit_id": u} for u in units[100:]] * 2
    stored = await client.post(url(agent, "performance"), json=calls, headers=owner.headers)
    assert stored.status_code == 201, stored.text

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    health = response.json()[0]["health"]
    counted = units[100:] if primary == "quality" else units[:200]
    per_arm = [sum(1 for u in counted if arms[u] == arm) for arm in ("control", "hot")]
    assert health["units"] == ("units served" if primary == "quality" else "exposed sessions")
    assert health["units_per_arm"] == per_arm
    assert health["srm_p_value"] == pytest.approx(stats.srm_p_value(per_arm, [50, 50]))
