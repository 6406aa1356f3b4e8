"""``promptlooper online check`` and ``resume-arm``: a guardrail stops an expensive arm from
the terminal, the results say so, and resuming undoes it; a wrong-signed threshold is a
one-line error with exit code 2."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from sqlalchemy.ext.asyncio import AsyncEngine

from promptlooper.db.engine import create_sessionmaker
from tests.cli.test_online_cli import ok
from tests.cli.test_sweep_cli import env_for, run
from tests.factories import COST_GUARD, online_experiment
from tests.online.test_guardrails import COST, _traffic, store

HERO = {"name": "Hero", "cookie_name": "exp_hero"}
DEFINITION = online_experiment("homepage_hero_test", "tiny_gang_social_proof", **HERO, **COST_GUARD)


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return env_for(tmp_path, db_url)


async def test_check_stops_an_expensive_arm_and_resume_arm_undoes_it(
    env: dict[str, str], tmp_path: Path, engine: AsyncEngine
):
    metric = tmp_path / "cost.yaml"
    metric.write_text(yaml.safe_dump(COST))
    ok(env, "online", "metric-create", str(metric))
    wrong = tmp_path / "wrong.yaml"
    wrong_rule = {"cost-per-call": {"threshold": -0.2}}
    wrong.write_text(yaml.safe_dump(DEFINITION | {"guardrail_thresholds": wrong_rule}))
    refused = run(env, "online", "create", str(wrong))
    assert refused.returncode == 2
    assert "guardrail_thresholds.cost-per-call.threshold" in refused.stderr + refused.stdout
    assert "Traceback" not in refused.stderr
    definition = tmp_path / "hero.yaml"
    definition.write_text(yaml.safe_dump(DEFINITION))
    ok(env, "online", "create", str(definition))
    await store(
        create_sessionmaker(engine),
        _traffic(300, {"control": 1.0, "tiny_gang_social_proof": 2.0}),
    )

    assert "stopped arm tiny_gang_social_proof (guardrail cost-per-call)" in ok(
        env, "online", "check", "homepage_hero_test"
    )
    results = ok(env, "online", "results", "homepage_hero_test")
    assert "STOPPED tiny_gang_social_proof: cost-per-call" in results
    # The page's wording of the family the p-values are adjusted in.
    assert (
        "p adj.: 1 test, so its adjusted p-value is its own; 2 of 3 comparisons have no data "
        "to test yet\n" in results
    ), results
    assert "resumed arm tiny_gang_social_proof" in ok(
        env, "online", "resume-arm", "homepage_hero_test", "tiny_gang_social_proof"
    )
    resumed = ok(env, "online", "results", "homepage_hero_test")
    assert "STOPPED" not in resumed
    # Resumed by hand, the arm is still past its threshold: the results keep saying so.
    assert "BREACHING tiny_gang_social_proof: cost-per-call" in resumed
    again = run(env, "online", "resume-arm", "homepage_hero_test", "tiny_gang_social_proof")
    assert again.returncode == 2
    assert "is not stopped" in again.stderr + again.stdout

    unknown = run(env, "online", "check", "nope")
    assert unknown.returncode == 2
    assert "nope" in unknown.stderr
    assert "nothing to do" not in unknown.stdout
    ok(env, "online", "stop", "homepage_hero_test")
    assert "homepage_hero_test: not live" in ok(env, "online", "check", "homepage_hero_test")
