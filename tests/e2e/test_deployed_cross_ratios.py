"""Cost per signup through ``promptlooper serve``: the SDK defines a ratio of the performance
log's cost over the browser's signups, the agent's calls and the browser's events arrive over
HTTP in either order, and the results (API and SDK) report it as gbstats computes it."""

from __future__ import annotations

import random
import warnings
from collections.abc import Callable

import pytest

from promptlooper.client import Client
from promptlooper.online.assignment import assign
from tests.deployed import BOOTSTRAP_KEY, Deployed, agent_with_variant
from tests.factories import even_arms

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0"}
KEY = "answer_cost"


def test_cost_per_signup_joins_the_performance_log_and_browser_events(
    serve: Callable[..., Deployed],
):
    server = serve()
    admin = server.admin
    rng = random.Random(17)
    units = [f"visitor-{i}" for i in range(120)]
    arms = {u: ["control", "lean"][assign(u, KEY, [50, 50])] for u in units}  # type: ignore[index]
    costs = {u: [rng.uniform(0.01, 0.03) * (0.6 if arms[u] == "lean" else 1) for _ in
                 range(rng.randint(1, 3))] for u in units}  # fmt: skip
    signups = {u: rng.choice([0, 1, 1, 2]) for u in units}
    for unit in units[:12]:  # shown an impression, never served: in the metric and its units
        costs[unit] = []
    with server.client() as http, Client(server.url, api_key=BOOTSTRAP_KEY) as sdk:
        agent, lean = agent_with_variant(http, admin, "answers", "Lean")
        metric = sdk.online.define_metric(
            "cost-per-signup",
            kind="performance",
            source="cost",
            aggregation="ratio",
            denominator={"kind": "event", "source": "signup"},
            direction="lower",
        )
        assert (metric["denominator"], metric["denominator_kind"]) == ("signup", "event")
        sdk.online.create(
            KEY,
            {
                "name": "Answer cost",
                "cookie_name": "exp_answer_cost",
                "primary_metric": "cost-per-signup",
                "variants": even_arms("lean", agent_variant_id=lean["id"]),
            },
        )
        records = [{"unit_id": u, "cost": c} for u in units for c in costs[u]]
        events = []
        for unit in units:
            base = {"experiment_key": KEY, "variant_key": arms[unit], "session_id": unit}
            events.append(base | {"event_name": "impression"})
            events += [base | {"event_name": "signup"}] * signups[unit]
        performance = f"/api/agents/{agent['id']}/performance"
        # Half the units' calls before their events, half after.
        first, second = records[: len(records) // 2], records[len(records) // 2 :]
        assert http.post(performance, json=first, headers=admin).status_code == 201
        sent = http.post("/api/experiments/batch", json={"events": events}, headers=BROWSER)
        assert sent.status_code == 202, sent.text
        assert sent.json()["rejected"] == 0, sent.text
        assert http.post(performance, json=second, headers=admin).status_code == 201

        over_http = http.get(
            "/api/v1/experiments/results", params={"experiment_key": KEY}, headers=admin
        )
        from_sdk = sdk.online.results(KEY)

    assert over_http.status_code == 200, over_http.text
    found = over_http.json()[0]["variants"][1]["metrics"]["cost-per-signup"]
    assert from_sdk[0]["variants"][1]["metrics"]["cost-per-signup"] == found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.frequentist.tests import TwoSidedTTest
        from gbstats.models.statistics import RatioStatistic, SampleMeanStatistic

    def theirs(arm: str) -> RatioStatistic:
        mine = [u for u in units if arms[u] == arm]
        m = [sum(costs[u]) for u in mine]
        d = [float(signups[u]) for u in mine]
        n = len(mine)
        return RatioStatistic(
            n=n,
            m_statistic=SampleMeanStatistic(n=n, sum=sum(m), sum_squares=sum(x * x for x in m)),
            d_statistic=SampleMeanStatistic(n=n, sum=sum(d), sum_squares=sum(x * x for x in d)),
            m_d_sum_of_products=sum(x * y for x, y in zip(m, d, strict=True)),
        )

    control, treatment = theirs("control"), theirs("lean")
    expected = TwoSidedTTest(control, treatment).compute_result()
    assert found["control_mean"] == pytest.approx(control.mean, abs=1e-9)
    assert found["treatment_mean"] == pytest.approx(treatment.mean, abs=1e-9)
    assert found["relative_lift"] == pytest.approx(expected.expected, abs=1e-9)
    assert found["frequentist"]["p_value"] == pytest.approx(expected.p_value, abs=1e-9)
    assert found["bayesian"]["chance_to_beat_control"] > 0.5  # lean's signups cost less
    health = over_http.json()[0]["health"]
    assert health["units"] == "units exposed or served"
    assert health["units_per_arm"] == [control.n, treatment.n]
