"""``promptlooper online`` as a user runs it, on both databases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.cli.inprocess import Invoke
from tests.cli.test_sweep_cli import env_for, run
from tests.factories import online_experiment

DEFINITION = online_experiment(
    "signup_copy", "short", cookie_name="exp_signup", eligible_routes=["/signup"]
)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return env_for(tmp_path, db_url)


def ok(env: dict[str, str], *args: str) -> str:
    result = run(env, *args)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def test_online_registry_from_the_terminal(env: dict[str, str], tmp_path: Path):
    created = tmp_path / "signup.yaml"
    created.write_text(yaml.safe_dump(DEFINITION))
    assert "created signup_copy: running, control=50%/short=50%" in ok(
        env, "online", "create", str(created)
    )

    changed = {k: v for k, v in DEFINITION.items() if k != "experiment_key"}
    changed["variants"] = [
        {"variant_key": "control", "allocation": 30, "is_control": True},
        {"variant_key": "short", "allocation": 70},
    ]
    update = tmp_path / "update.json"
    update.write_text(json.dumps(changed))
    assert "control=30%/short=70%" in ok(env, "online", "update", "signup_copy", str(update))

    shown = json.loads(ok(env, "online", "show", "signup_copy"))
    assert shown["hash_seed"] == "signup_copy"
    assert "stopped" in ok(env, "online", "stop", "signup_copy")
    assert "signup_copy" in ok(env, "online", "list")
    assert "running" in ok(env, "online", "start", "signup_copy")

    results = ok(env, "online", "results", "signup_copy")
    assert "signup_copy: conversion rate" in results
    assert "not enough data yet" in results
    as_json = json.loads(ok(env, "online", "results", "signup_copy", "--json"))
    assert [v["variant_key"] for v in as_json["variants"]] == ["control", "short"]


NOT_A_MAPPING = "must be a mapping of fields (name: value)"


@pytest.mark.parametrize(
    ("definition", "message"),
    [
        (DEFINITION | {"variants": DEFINITION["variants"][:1]}, "variants: List should have"),
        (DEFINITION | {"eligible_routes": ["signup"]}, "must start with /"),
        ({"name": "x"}, "cookie_name: Field required"),
        (
            ["not", "a", "mapping"],
            "error: bad.yaml: must be a mapping of fields (name: value), not a list",
        ),
        (None, "error: bad.yaml: must be a mapping of fields (name: value), not nothing"),
        (DEFINITION | {"auto_stop": "maybe"}, "error: bad.yaml: auto_stop: Input should be"),
        (
            DEFINITION | {"experiment_key": "Signup Copy"},
            "error: bad.yaml: experiment_key: must be lowercase letters and digits, words "
            "joined by - or _ (like checkout-button)",
        ),
        (  # a file names fields as the API does, not as the web form's labels
            DEFINITION | {"guardrail_thresholds": {"cost": {"threshold": 0.2}}},
            "error: bad.yaml: guardrail_thresholds.cost: not one of guardrail_metrics; add it "
            "there",
        ),
    ],
)
def test_bad_definitions_are_one_line_errors(
    cli: Invoke, tmp_path: Path, definition: dict, message: str
):
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(definition))

    result = cli("online", "create", str(path))

    assert result.code == 2
    assert message in result.err
    assert "Value error" not in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_update_takes_the_file_create_took_and_what_show_printed(cli: Invoke, tmp_path: Path):
    created = tmp_path / "signup.yaml"
    created.write_text(yaml.safe_dump(DEFINITION))
    assert cli("online", "create", str(created)).code == 0

    edited = DEFINITION | {"description": "Shorter copy wins?"}
    created.write_text(yaml.safe_dump(edited))
    updated = cli("online", "update", "signup_copy", str(created))
    assert updated.code == 0, updated.err
    shown = cli("online", "show", "signup_copy")
    assert json.loads(shown.out)["description"] == "Shorter copy wins?"

    printed = tmp_path / "shown.json"
    printed.write_text(shown.out)
    assert cli("online", "update", "signup_copy", str(printed)).code == 0

    other = cli("online", "update", "other_key", str(created))
    assert other.code == 2
    assert "No online experiment with key 'other_key'" in other.err
    created.write_text(yaml.safe_dump(DEFINITION | {"experiment_key": "renamed"}))
    renamed = cli("online", "update", "signup_copy", str(created))
    assert renamed.code == 2
    assert renamed.err.strip() == (
        "error: experiment_key: read-only, and differs from the experiment's; leave it out"
    )


def test_metrics_and_power_from_the_terminal(cli: Invoke, tmp_path: Path):
    metric = tmp_path / "revenue.yaml"
    metric.write_text(
        yaml.safe_dump({"name": "revenue", "source": "purchase", "aggregation": "mean"})
    )
    defined = cli("online", "metric-create", str(metric))
    assert defined.code == 0, defined.err
    assert "defined revenue: mean of 'purchase' events" in defined.out
    assert "revenue" in cli("online", "metrics").out
    experiment = tmp_path / "signup.yaml"
    experiment.write_text(yaml.safe_dump(DEFINITION | {"secondary_metrics": ["revenue"]}))
    assert cli("online", "create", str(experiment)).code == 0
    assert cli("online", "results", "signup_copy", "--prior", "proper").code == 0
    named = cli("online", "metric-delete", "revenue")
    assert named.code == 2
    assert "named by online experiment 'signup_copy'" in named.err

    planned = cli("online", "power", "--baseline", "0.1", "--units-per-day", "2000", "--days", "14")
    assert planned.code == 0, planned.err
    assert 0.05 < json.loads(planned.out)["minimum_detectable_lift"] < 0.2
    running = cli("online", "power", "signup_copy", "--lift", "0.1")
    assert running.code == 0, running.err
    assert json.loads(running.out)["power_reached"] == 0.0  # no units yet
    for lift in ("-5", "20"):  # refused as the API refuses them, not a power for them
        unmeant = cli("online", "power", "signup_copy", "--lift", lift)
        assert unmeant.code == 2, unmeant.out
        assert unmeant.err.strip() == (
            "error: lift: must be above -1 and at most 10 (relative, 0.05 = +5 %)"
        )
    ignored = cli("online", "power", "signup_copy", "--baseline", "0.1")
    assert ignored.code == 2, ignored.out
    assert ignored.err.startswith("error: baseline: plans an experiment; with experiment_key")

    ratio = tmp_path / "ratio.yaml"
    ratio.write_text(yaml.safe_dump({"name": "aov", "source": "purchase", "aggregation": "ratio"}))
    refused = cli("online", "metric-create", str(ratio))
    assert refused.code == 2
    assert "denominator" in refused.err
    missing = cli("online", "power", "--baseline", "0.1")
    assert missing.code == 2
    for option, value in (("--baseline", "nan"), ("--units-per-day", "1e308")):
        plan = {"--baseline": "0.1", "--units-per-day": "2000", "--days": "14"} | {option: value}
        bad = cli("online", "power", *(part for pair in plan.items() for part in pair))
        assert bad.code == 2, bad.out
        assert bad.err.startswith(f"error: {option.removeprefix('--').replace('-', '_')}:")


def test_a_cuped_metric_from_the_terminal(cli: Invoke, tmp_path: Path):
    import asyncio
    from datetime import UTC, datetime, timedelta

    from promptlooper.cli.common import load_settings, session_scope
    from promptlooper.online import tallies

    metric = tmp_path / "revenue.yaml"
    metric.write_text(yaml.safe_dump({"name": "revenue", "source": "purchase",
                                      "aggregation": "mean", "cuped": True,
                                      "cuped_window_days": 3}))  # fmt: skip
    defined = cli("online", "metric-create", str(metric))
    assert defined.code == 0, defined.err
    assert (
        "defined revenue: mean of 'purchase' events, CUPED-adjusted over the 3 days before "
        "exposure" in defined.out
    )
    assert "mean (CUPED, 3 d)" in cli("online", "metrics").out
    experiment = tmp_path / "signup.yaml"
    experiment.write_text(yaml.safe_dump(DEFINITION | {"primary_metric": "revenue"}))
    assert cli("online", "create", str(experiment)).code == 0
    start = datetime.now(UTC) - timedelta(hours=1)
    rows = []
    for index in range(40):
        arm = ("control", "short")[index % 2]
        habit = 10.0 + index
        for minute, kind, value in ((0, "purchase", habit), (1, "impression", None),
                                    (2, "purchase", habit * 1.1 + index % 3)):  # fmt: skip
            rows.append({"experiment_key": "signup_copy", "variant_key": arm,
                         "session_id": f"u{index}", "event_type": kind, "value": value,
                         "path": "/signup", "event_id": None, "metadata": None,
                         "created_at": start + timedelta(minutes=minute)})  # fmt: skip

    async def store() -> None:  # as ingestion stores them, into the CLI's database
        async with session_scope(load_settings()) as session:
            await tallies.record(
                session, rows, frozenset({"purchase"}), {"purchase": frozenset({3})}
            )

    asyncio.run(store())

    shown = cli("online", "results", "signup_copy")

    assert shown.code == 0, shown.err
    assert "short revenue: CUPED (θ = " in shown.out
    assert "of the lift's variance; unadjusted lift" in shown.out
    proportion = tmp_path / "signed.yaml"
    proportion.write_text(yaml.safe_dump({"name": "signed", "source": "signup",
                                          "aggregation": "proportion", "cuped": True}))  # fmt: skip
    refused = cli("online", "metric-create", str(proportion))
    assert refused.code == 2
    assert "cuped" in refused.err
    metric.write_text(yaml.safe_dump({"name": "spend", "source": "purchase",
                                      "aggregation": "mean", "cuped": True,
                                      "cuped_window_days": 0}))  # fmt: skip
    refused = cli("online", "metric-create", str(metric))
    assert refused.code == 2
    assert refused.err.startswith("error: revenue.yaml: cuped_window_days:"), refused.err
