"""Simulate production traffic for an online experiment over two agent variants, through the
PromptLooper SDK, and print its results.

An answering agent runs on the mock provider. A small sweep compares a small and a large model
offline; both configs are promoted to variants, and an online experiment splits users between
them: the incumbent (small) as control, the challenger (large). Its primary metric is answer
quality (from the performance log), cost per call is a guardrail, and revenue per user is a
secondary metric adjusted with CUPED by what each user spent before seeing the experiment.

Each simulated user has a spending habit: purchases during a pre-period (tracked before the
user is exposed), then one question answered by the variant the experiment resolves for the
user (logged with its quality, cost, latency and tokens), an impression, and purchases after it
that follow the habit and, a little, the answer's quality. Events are queued in the background
and flushed at the end.

    python examples/online-llm/simulate.py --url http://127.0.0.1:8000 --api-key $KEY

The key must be an admin's (online experiments are managed by admins). Run it again with
another ``--key`` for a fresh experiment.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from promptlooper.client import APIError, Client, ConflictError

MODELS = {
    # Per model: answer quality (mean, sd), cost per 1k tokens, latency (ms) and tokens out.
    "small": {"quality": (0.72, 0.12), "cost": 0.0004, "latency": 380, "tokens_out": 90},
    "large": {"quality": (0.80, 0.10), "cost": 0.0030, "latency": 910, "tokens_out": 120},
}
ROWS = [
    {"input": "My card was charged twice", "expected": "billing"},
    {"input": "The app crashes on start", "expected": "bug"},
    {"input": "I forgot my password", "expected": "account"},
    {"input": "Refund for a double charge", "expected": "billing"},
    {"input": "Crash when I upload a photo", "expected": "bug"},
    {"input": "Cannot reset my password", "expected": "account"},
]
SWEEP = {
    "name": "answerer models",
    "parameter_space": {"model": ["mock:small", "mock:large"]},
    "dataset": {"rows": ROWS},
    "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
    "providers": {
        "mock": {
            "models": {"small": {"accuracy": 0.6}, "large": {"accuracy": 0.95}},
            "knowledge": {"charge": "billing", "crash": "bug", "password": "account"},
        }
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="default: PROMPTLOOPER_URL or http://127.0.0.1:8000")
    parser.add_argument("--api-key", help="an admin's key; default: PROMPTLOOPER_API_KEY")
    parser.add_argument("--key", default="answerer_models", help="the experiment's key")
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    with Client(args.url, api_key=args.api_key) as client:
        incumbent, challenger, agent = _promoted_variants(client, args.key)
        _define(client, args.key, incumbent, challenger)
        print(_plan(client))
        started = time.perf_counter()
        _traffic(client, rng, args.key, agent, args.users)
        delivery = client.online.flush()
        took = time.perf_counter() - started
        print(f"{args.users:,} users simulated in {took:.1f} s: {delivery.accepted:,} events "
              f"accepted, {delivery.rejected} rejected, {delivery.failed} lost")  # fmt: skip
        (result,) = client.online.results(args.key)
        print(_report(result))
        reached = client.online.power(args.key, lift=0.05)
        print(f"power to detect +5 % answer quality now: {reached['power_reached']:.0%}")
    return 0


def _promoted_variants(client: Client, key: str) -> tuple[dict, dict, dict]:
    """A project and agent, a sweep of the two models, and each model's config promoted to a
    variant (the sweep's score recorded with it)."""
    project = client.projects.create(f"online {key}")
    agent = client.agents.create(
        "Answerer", project_id=project["id"], model_provider="mock", model_name="small",
        user_prompt_template="Classify: {{ input }}. One word.", temperature=0.0,
    )  # fmt: skip
    sweep = client.agents.sweep(agent["id"], SWEEP)
    client.experiments.start(sweep["id"])
    while client.experiments.get(sweep["id"])["status"] not in ("completed", "failed"):
        time.sleep(0.2)
    board = client.experiments.leaderboard(sweep["id"])["data"]
    by_model = {row["parameters"]["model"]: row for row in board}
    made = {}
    for model, name in (("mock:small", "Incumbent"), ("mock:large", "Challenger")):
        row = by_model[model]
        made[model] = client.variants.promote(
            agent["id"], sweep["id"], config_hash=row["config_hash"], name=name
        )
        print(f"{name}: {model}, sweep score {row['score']:.3f}")
    return made["mock:small"], made["mock:large"], agent


METRICS: list[dict[str, Any]] = [
    {"name": "answer-quality", "kind": "performance", "source": "quality",
     "aggregation": "mean"},
    {"name": "cost-per-call", "kind": "performance", "source": "cost",
     "aggregation": "ratio", "denominator": "cost", "direction": "lower"},
    {"name": "revenue", "source": "purchase", "aggregation": "mean", "cuped": True},
]  # fmt: skip
"""The metrics the experiment names. Metrics are site-wide, so one of these names may already
exist: it is reused only when it measures the same thing."""
DEFAULTS = {"kind": "event", "denominator": None, "direction": "higher", "cuped": False}


def define_metrics(client: Client) -> None:
    """Define ``METRICS``, reusing one that exists (from an earlier run) when it is the same
    definition; a different metric under the same name (another example's, say) stops the
    simulation, since reusing it would report the wrong thing."""
    for metric in METRICS:
        try:
            client.online.define_metric(**metric)
        except ConflictError:
            existing = client.online.metric(metric["name"])
            wanted = DEFAULTS | metric
            differs = {k: v for k, v in wanted.items() if existing.get(k) != v}
            if differs:
                found = ", ".join(f"{k}={existing.get(k)!r}" for k in differs)
                needed = ", ".join(f"{k}={v!r}" for k, v in differs.items())
                raise SystemExit(
                    f"simulate.py: metric {metric['name']!r} already exists with {found}; this "
                    f"simulation needs {needed}. Delete it (`promptlooper online "
                    f"metric-delete {metric['name']}`) or run against another database."
                ) from None


def _define(client: Client, key: str, incumbent: dict, challenger: dict) -> None:
    define_metrics(client)
    client.online.create(
        key,
        {
            "name": "Answerer: small or large model",
            "cookie_name": f"exp_{key}",
            "primary_metric": "answer-quality",
            "secondary_metrics": ["revenue"],
            "guardrail_metrics": ["cost-per-call"],
            "variants": [
                {"variant_key": "incumbent", "allocation": 50, "is_control": True,
                 "agent_variant_id": incumbent["id"]},
                {"variant_key": "challenger", "allocation": 50,
                 "agent_variant_id": challenger["id"]},
            ],
        },
    )  # fmt: skip


def _plan(client: Client) -> str:
    """What 2,000 users a day can detect in two weeks, for a quality around 0.72 ± 0.12."""
    plan = client.online.power(baseline=0.72, variance=0.12**2, units_per_day=2000, days=14)
    return (
        f"plan: with 2,000 users a day for 14 days, the smallest quality lift detected "
        f"80 % of the time is {plan['minimum_detectable_lift']:+.2%}"
    )


def _traffic(client: Client, rng: random.Random, key: str, agent: dict, users: int) -> None:
    now = datetime.now(UTC)
    for index in range(users):
        unit = f"user-{index:05d}"
        habit = rng.lognormvariate(3.0, 0.8)  # what this user tends to spend
        served = client.variants.resolve(agent["id"], unit_id=unit)
        if served.experiment is None:  # the experiment is not serving: nothing to measure
            continue
        arm = served.experiment["variant_key"]
        # The pre-period: purchases in the days before the user met the agent.
        for day in sorted(rng.sample(range(1, 7), rng.randint(0, 3)), reverse=True):
            value = round(habit * rng.uniform(0.5, 1.5), 2)
            client.online.track(key, arm, unit, "purchase", value=value,
                                timestamp=now - timedelta(days=day))  # fmt: skip
        model = MODELS[served["model_name"]]
        quality = min(1.0, max(0.0, rng.gauss(*model["quality"])))
        tokens_in, tokens_out = rng.randint(300, 900), rng.randint(40, 2 * model["tokens_out"])
        client.variants.log(
            served,
            quality=quality,
            cost=round(model["cost"] * (tokens_in + tokens_out) / 1000, 6),
            latency_ms=rng.gauss(model["latency"], model["latency"] / 5),
            tokens_in=tokens_in,
            tokens_out=tokens_out,
        )
        client.online.track(key, arm, unit, "impression", timestamp=now)
        # After: the habit again, nudged by how good the answer was.
        for minute in range(rng.randint(0, 2)):
            value = round(habit * rng.uniform(0.6, 1.4) * (0.8 + 0.4 * quality), 2)
            client.online.track(key, arm, unit, "purchase", value=value,
                                timestamp=now + timedelta(seconds=1 + minute))  # fmt: skip


def _report(result: dict) -> str:
    lines = []
    control, *treatments = result["variants"]
    if offline := control.get("offline"):
        lines.append(f"{control['variant_key']}: sweep score {offline['score']:.3f} (control)")
    for arm in treatments:
        offline = arm.get("offline") or {}
        if offline:
            lines.append(
                f"{arm['variant_key']}: sweep score {offline['score']:.3f}; offline predicted "
                f"{_pct(offline['predicted_lift'])} on {offline['metric']}, production shows "
                f"{_pct(offline['observed_lift'])}"
            )
        for name, metric in arm.get("metrics", {}).items():
            if "error" in metric:
                lines.append(f"  {name}: {metric['error']}")
                continue
            low, high = metric["frequentist"]["ci"]
            better = metric["bayesian"]["chance_to_beat_control"]  # in the metric's direction
            line = (
                f"  {name} ({metric['role']}, {metric['direction']} is better): "
                f"{_pct(metric['relative_lift'])} [{_pct(low)}, {_pct(high)}], "
                f"p = {metric['frequentist']['p_value']:.3g}, chance it is better {better:.0%}"
            )
            if cuped := metric.get("cuped"):
                line += (
                    f"; CUPED removed {cuped['variance_removed']:.0%} of the variance "
                    f"(unadjusted {_pct(cuped['unadjusted_relative_lift'])})"
                )
            lines.append(line)
    health = result["health"]
    lines.append(f"SRM p = {health['srm_p_value']:.3g}, enough data: {health['enough_data']}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1%}"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except APIError as exc:  # the server is down, the key is not an admin's ...
        sys.exit(f"simulate.py: {exc}")
