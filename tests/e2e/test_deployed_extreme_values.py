"""The largest values an online experiment accepts, through ``promptlooper serve``: beyond the
bound a performance record is refused at its field (as an event's value is), and at the bound,
on every unit, the results (API and CLI) still add up and later records still count."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from promptlooper.online.assignment import assign
from promptlooper.values import MAX_AMOUNT
from promptlooper.variants.schemas import MAX_TOKENS
from tests.deployed import Deployed, agent_with_variant
from tests.factories import even_arms

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0"}
KEY = "big_values"
METRICS = [
    {"name": "cost-per-call", "kind": "performance", "source": "cost", "aggregation": "ratio",
     "denominator": "cost", "direction": "lower"},
    {"name": "latency", "kind": "performance", "source": "latency_ms", "aggregation": "mean",
     "direction": "lower"},
    {"name": "tokens", "kind": "performance", "source": "tokens_out", "aggregation": "mean"},
    {"name": "cost-per-signup", "kind": "performance", "source": "cost", "aggregation": "ratio",
     "denominator": {"kind": "event", "source": "signup"}, "direction": "lower"},
    {"name": "revenue", "source": "purchase", "aggregation": "mean", "cuped": True},
]  # fmt: skip


def test_performance_values_are_bounded_and_the_largest_still_give_results(
    serve: Callable[..., Deployed],
):
    server = serve()
    admin = server.admin
    units = [f"visitor-{i}" for i in range(60)]
    arms = {u: ["control", "fast"][assign(u, KEY, [50, 50])] for u in units}  # type: ignore[index]
    with server.client() as http:
        agent, fast = agent_with_variant(http, admin, "big", "Fast")
        for metric in METRICS:
            created = http.post("/api/admin/metrics", json=metric, headers=admin)
            assert created.status_code == 201, created.text
        definition = {
            "experiment_key": KEY,
            "name": "Big values",
            "cookie_name": "exp_big_values",
            "primary_metric": "cost-per-call",
            "secondary_metrics": ["latency", "tokens", "cost-per-signup", "revenue"],
            "variants": even_arms("fast", agent_variant_id=fast["id"]),
        }
        created = http.post("/api/admin/experiments", json=definition, headers=admin)
        assert created.status_code == 201, created.text
        performance = f"/api/agents/{agent['id']}/performance"

        for field, value in [("cost", 1e300), ("latency_ms", MAX_AMOUNT * 10), ("cost", 1e16)]:
            refused = http.post(
                performance, json={"unit_id": units[0], field: value}, headers=admin
            )
            assert refused.status_code == 422, refused.text
            (problem,) = refused.json()["detail"]
            assert problem["loc"] == ["body", field], problem
            assert problem["msg"].endswith(f"{MAX_AMOUNT:.0f}"), problem
        in_batch = http.post(
            performance, json=[{"unit_id": units[0]}, {"unit_id": units[0], "cost": 1e300}],
            headers=admin,
        )  # fmt: skip
        assert in_batch.status_code == 422, in_batch.text
        assert in_batch.json()["detail"][0]["loc"] == ["body", 1, "cost"]

        largest = {"cost": MAX_AMOUNT, "latency_ms": MAX_AMOUNT, "quality": 1.0,
                   "tokens_in": MAX_TOKENS, "tokens_out": MAX_TOKENS}  # fmt: skip
        records = [{"unit_id": u, **largest} for u in units for _ in range(5)]
        for start in range(0, len(records), 100):
            sent = http.post(performance, json=records[start : start + 100], headers=admin)
            assert sent.status_code == 201, sent.text
        events = []
        yesterday = (datetime.now(UTC) - timedelta(days=1)).isoformat()
        for unit in units:
            base = {"experiment_key": KEY, "variant_key": arms[unit], "session_id": unit}
            before = {"event_name": "purchase", "value": MAX_AMOUNT, "timestamp": yesterday}
            events += [base | before] * 3  # CUPED's covariate
            events.append(base | {"event_name": "impression"})
            events += [base | {"event_name": "signup"}, base | {"event_name": "conversion"}]
            events += [base | {"event_name": "purchase", "value": MAX_AMOUNT}] * 3
        sent = http.post("/api/experiments/batch", json={"events": events}, headers=BROWSER)
        assert sent.status_code == 202, sent.text
        assert sent.json()["rejected"] == 0, sent.text

        # A small record after the largest ones still counts, on both backends.
        later = http.post(performance, json={"unit_id": units[0], "cost": 0.001}, headers=admin)
        assert later.status_code == 201, later.text

        results = http.get(
            "/api/v1/experiments/results", params={"experiment_key": KEY}, headers=admin
        )
        assert results.status_code == 200, results.text
        found = results.json()[0]["variants"][1]["metrics"]
        per_call = found["cost-per-call"]
        assert per_call["control_mean"] == MAX_AMOUNT or per_call["treatment_mean"] == MAX_AMOUNT
        assert found["latency"]["control_mean"] == 5 * MAX_AMOUNT
        assert found["tokens"]["control_mean"] == 5 * MAX_TOKENS
        assert found["cost-per-signup"]["control_mean"] > MAX_AMOUNT
        revenue = found["revenue"]
        assert revenue["control_mean"] == 3 * MAX_AMOUNT
        assert revenue["cuped"]["window_days"] == 14

    cli = subprocess.run(
        [sys.executable, "-m", "promptlooper", "online", "results", KEY],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "Traceback" not in cli.stderr
    assert "cost-per-call" in cli.stdout
