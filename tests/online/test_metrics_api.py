"""Metrics as definitions: the registry, ingestion of their events, and their results."""

from __future__ import annotations

import httpx
import pytest

from promptlooper.online import stats
from tests.online.conftest import BROWSER, control_terms, event, store, stored

EXPERIMENT = "/api/admin/experiments/homepage_hero_test"
RESULTS = "/api/v1/experiments/results?experiment_key=homepage_hero_test"
METRICS = [
    {"name": "signed-up", "source": "signup", "aggregation": "proportion"},
    {"name": "revenue", "source": "purchase", "aggregation": "mean"},
    {
        "name": "order-value",
        "source": "purchase",
        "aggregation": "ratio",
        "denominator": "purchase",
        "direction": "higher",
    },
]


async def _define(client: httpx.AsyncClient, headers: dict, names: dict) -> None:
    for metric in METRICS:
        response = await client.post("/api/admin/metrics", json=metric, headers=headers)
        assert response.status_code == 201, response.text
    experiment = (await client.get(EXPERIMENT, headers=headers)).json()
    response = await client.put(EXPERIMENT, json=experiment | names, headers=headers)
    assert response.status_code == 200, response.text


async def test_defined_metrics_are_reported_per_treatment_from_their_events(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    roles = {
        "primary_metric": "revenue",
        "secondary_metrics": ["signed-up"],
        "guardrail_metrics": ["order-value"],
    }
    await _define(client, bootstrap_headers, roles)
    # Per arm, sessions 0..n-1: all exposed; purchases of varying values; some sign up.
    purchases = {
        "control": [[10.0], [], [5.0, 7.0], [20.0]],
        "tiny_gang_social_proof": [[30.0, 2.0], [8.0], []],
    }
    signups = {"control": [1], "tiny_gang_social_proof": [0, 2]}
    bodies = []
    for variant, sessions in purchases.items():
        for index, values in enumerate(sessions):
            unit = {"variant_key": variant, "session_id": f"{variant}-{index}"}
            bodies.append(event(**unit, event_name="impression"))
            bodies += [event(**unit, event_name="purchase", value=v) for v in values]
            if index in signups[variant]:
                bodies.append(event(**unit, event_name="signup"))
    for body in bodies:
        response = await client.post("/api/experiments/event", json=body, headers=BROWSER)
        assert response.json()["accepted"] is True, body
    refused = await client.post(
        "/api/experiments/event", json=event(event_name="checkout"), headers=BROWSER
    )
    assert refused.json()["accepted"] is False
    assert refused.headers["X-Event-Rejected"] == "unknown_event"

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    control, treatment = response.json()[0]["variants"]
    assert "metrics" not in control
    metrics = treatment["metrics"]
    assert list(metrics) == ["revenue", "signed-up", "order-value"]
    assert [m["role"] for m in metrics.values()] == ["primary", "secondary", "guardrail"]

    def moments(values: list[list[float]]) -> stats.Moments:
        sums = [sum(v) for v in values]
        return stats.Moments(len(values), sum(sums), sum(s * s for s in sums))

    def ratio(values: list[list[float]]) -> stats.Ratio:
        counts = [float(len(v)) for v in values]
        sums = [sum(v) for v in values]
        return stats.Ratio(
            moments(values),
            stats.Moments(len(values), sum(counts), sum(c * c for c in counts)),
            sum(c * s for c, s in zip(counts, sums, strict=True)),
        )

    expected = {
        "revenue": stats.compare(
            moments(purchases["control"]), moments(purchases["tiny_gang_social_proof"])
        ),
        "order-value": stats.compare(
            ratio(purchases["control"]), ratio(purchases["tiny_gang_social_proof"])
        ),
        "signed-up": stats.compare(stats.Moments.binary(4, 1), stats.Moments.binary(3, 2)),
    }
    for name, found in expected.items():
        assert metrics[name]["control_mean"] == pytest.approx(found["control_mean"])
        assert metrics[name]["treatment_mean"] == pytest.approx(found["treatment_mean"])
        assert metrics[name]["relative_lift"] == pytest.approx(found["relative_lift"])
        assert metrics[name]["frequentist"]["p_value"] == pytest.approx(
            found["frequentist"]["p_value"]
        )
        assert "p_value_adjusted" in metrics[name]["frequentist"]
    assert metrics["order-value"]["control_mean"] == pytest.approx(42.0 / 4)

    proper = await client.get(RESULTS + "&prior=proper", headers=bootstrap_headers)
    bayesian = proper.json()[0]["variants"][1]["metrics"]["revenue"]["bayesian"]
    assert bayesian["prior"] == "proper"
    assert abs(bayesian["expected_lift"]) < abs(metrics["revenue"]["relative_lift"])


async def test_a_metric_counts_only_what_a_session_sent_from_its_first_impression_on(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    await _define(client, bootstrap_headers, {"primary_metric": "revenue"})

    tracked = frozenset({"purchase", "signup"})

    async def write(events):
        await store(sessionmaker, events, tracked, {"purchase": frozenset({14})})

    await write([stored("a", "purchase", 4.0), stored("a", "signup"), stored("b", "impression")])
    await write([stored("a", "purchase", 6.0), stored("b", "purchase", 1.0)])
    await write([stored("a", "impression"), stored("c", "purchase", 100.0)])

    terms = await control_terms(sessionmaker)
    # Exposed: a and b. a sent its purchases (4 + 6) and its signup before its impression:
    # they are its covariate, not its metric; b's purchase (1) came after. c never saw the
    # variant.
    assert terms["purchase:v"] == 1.0
    assert terms["purchase:vv"] == 1.0
    assert terms["purchase:n"] == 1.0
    assert terms["purchase:nv"] == 1.0
    assert terms["purchase:units"] == 1.0
    assert terms["purchase:p14"] == 10.0
    assert terms["purchase:pp14"] == 100.0
    assert terms["purchase:vp14"] == 0.0
    assert terms["signup:units"] == 0.0
    assert terms["signup:n"] == 0.0  # signed up only before exposure


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "x", "source": "purchase", "aggregation": "ratio"}, "denominator"),
        (
            {"name": "x", "source": "purchase", "aggregation": "mean", "denominator": "purchase"},
            "denominator",
        ),
        (
            {"name": "x", "source": "purchase", "aggregation": "ratio", "denominator": "signup"},
            "denominator",
        ),
        ({"name": "Not A Slug", "source": "purchase", "aggregation": "mean"}, "name"),
        ({"name": "x", "source": "purchase", "aggregation": "median"}, "aggregation"),
        ({"name": "conversion", "source": "purchase", "aggregation": "mean"}, "name"),
    ],
)
async def test_bad_definitions_are_422_naming_the_field(
    client: httpx.AsyncClient, registry, bootstrap_headers, body, field
):
    response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    assert field in response.text


async def test_experiments_name_only_known_metrics_and_keep_them_defined(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    experiment = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    unknown = await client.put(
        EXPERIMENT, json=experiment | {"guardrail_metrics": ["nope"]}, headers=bootstrap_headers
    )
    assert unknown.status_code == 422
    assert unknown.json()["detail"] == [
        {
            "loc": ["body", "guardrail_metrics", 0],
            "msg": "no metric named 'nope'; define it first",
            "type": "value_error",
        }
    ]

    await _define(client, bootstrap_headers, {"secondary_metrics": ["revenue"]})
    again = await client.post("/api/admin/metrics", json=METRICS[1], headers=bootstrap_headers)
    assert again.status_code == 409
    named = await client.delete("/api/admin/metrics/revenue", headers=bootstrap_headers)
    assert named.status_code == 409
    assert (
        await client.delete("/api/admin/metrics/signed-up", headers=bootstrap_headers)
    ).status_code == 204
    listed = (await client.get("/api/admin/metrics", headers=bootstrap_headers)).json()
    assert [m["name"] for m in listed["data"]] == ["order-value", "revenue"]
    assert (
        await client.get("/api/admin/metrics/signed-up", headers=bootstrap_headers)
    ).status_code == 404


async def test_chance_to_beat_control_follows_the_metrics_direction(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    for name, direction in (("spend", "lower"), ("revenue", "higher")):
        body = {"name": name, "source": "purchase", "aggregation": "mean", "direction": direction}
        response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)
        assert response.status_code == 201, response.text
    experiment = (await client.get(EXPERIMENT, headers=bootstrap_headers)).json()
    names = {"primary_metric": "revenue", "secondary_metrics": ["spend"]}
    response = await client.put(EXPERIMENT, json=experiment | names, headers=bootstrap_headers)
    assert response.status_code == 200, response.text
    # The treatment's sessions spend about twice as much as control's.
    for variant, scale in (("control", 1.0), ("tiny_gang_social_proof", 2.0)):
        for index in range(20):
            unit = {"variant_key": variant, "session_id": f"{variant}-{index}"}
            for body in (
                event(**unit, event_name="impression"),
                event(**unit, event_name="purchase", value=scale * (10 + index % 5)),
            ):
                response = await client.post("/api/experiments/event", json=body, headers=BROWSER)
                assert response.json()["accepted"] is True

    response = await client.get(RESULTS, headers=bootstrap_headers)

    metrics = response.json()[0]["variants"][1]["metrics"]
    assert metrics["revenue"]["bayesian"]["chance_to_beat_control"] > 0.99
    assert metrics["spend"]["bayesian"]["chance_to_beat_control"] < 0.01
    assert metrics["spend"]["bayesian"]["risk_treatment"] == pytest.approx(
        metrics["revenue"]["bayesian"]["risk_control"]
    )


async def test_cuped_on_a_proportion_is_located_at_the_field(
    client: httpx.AsyncClient, bootstrap_headers
):
    body = {"name": "signed-up", "source": "signup", "aggregation": "proportion", "cuped": True}

    response = await client.post("/api/admin/metrics", json=body, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    assert [p["loc"] for p in response.json()["detail"]] == [["body", "cuped"]]
