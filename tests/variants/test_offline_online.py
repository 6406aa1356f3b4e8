"""Offline meets online: the results of an experiment over variants promoted from a sweep show
each arm's sweep score and the lift it predicted beside the lift observed."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.online.assignment import assign
from tests.factories import create_online_experiment, even_arms
from tests.sweeps.conftest import finished
from tests.variants.conftest import TWO_MODELS, make_variant
from tests.variants.test_agents_api import url
from tests.web.conftest import UiClient, ui_admin  # noqa: F401 (the page's admin)

KEY = "extractor_models"
RESULTS = f"/api/v1/experiments/results?experiment_key={KEY}"


def _models(variants: list[dict], **fields) -> dict:
    """Online experiment ``extractor_models`` over ``variants``."""
    return {
        "experiment_key": KEY,
        "name": "Extractor models",
        "cookie_name": "exp_models",
        "variants": variants,
    } | fields


async def _promoted(client, app, owner, agent, project_id) -> tuple[dict, dict]:
    """The sweep's best config and its runner-up, each promoted to a variant."""
    sweep, board = await finished(client, app, owner, project_id, TWO_MODELS)
    variants = []
    for name, row in zip(("Best", "Runner-up"), board[:2], strict=True):
        response = await client.post(
            url(agent, "variants", "from-experiment"),
            json={"experiment_id": sweep["id"], "config_hash": row["config_hash"], "name": name},
            headers=owner.headers,
        )
        assert response.status_code == 201, response.text
        variants.append(response.json())
    return variants[0], variants[1]


async def test_results_set_the_sweep_score_and_predicted_lift_beside_the_observed_lift(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner,
    agent,
    project_id,
    bootstrap_headers,
    ui_admin: UiClient,  # noqa: F811
):
    best, runner_up = await _promoted(client, app, owner, agent, project_id)
    metric = {"name": "answer-quality", "kind": "performance", "source": "quality",
              "aggregation": "mean"}  # fmt: skip
    created = await client.post("/api/admin/metrics", json=metric, headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    arms = [
        {"variant_key": "incumbent", "allocation": 50, "is_control": True,
         "agent_variant_id": runner_up["id"]},
        {"variant_key": "challenger", "allocation": 50, "agent_variant_id": best["id"]},
    ]  # fmt: skip
    body = _models(arms, primary_metric="answer-quality")
    await create_online_experiment(client, bootstrap_headers, body)
    # Each unit's calls, logged with the unit: the challenger answers better.
    records = []
    for index in range(40):
        unit = f"user-{index}"
        arm = assign(unit, KEY, [50, 50])
        quality = (0.6 if arm == 0 else 0.75) + (index % 5) / 50
        records += [{"unit_id": unit, "quality": quality, "cost": 0.01}] * 2
    logged = await client.post(url(agent, "performance"), json=records, headers=owner.headers)
    assert logged.status_code in (200, 201), logged.text

    response = await client.get(RESULTS, headers=bootstrap_headers)

    assert response.status_code == 200, response.text
    control, treatment = response.json()[0]["variants"]
    assert control["offline"]["score"] == pytest.approx(runner_up["origin"]["score"])
    assert control["offline"]["config_hash"] == runner_up["origin"]["config_hash"]
    assert control["offline"]["sweep_id"] == best["origin"]["experiment_id"]
    assert control["offline"]["sweep_name"]
    assert "predicted_lift" not in control["offline"]
    offline = treatment["offline"]
    assert offline["score"] == pytest.approx(best["origin"]["score"])
    predicted = best["origin"]["score"] / runner_up["origin"]["score"] - 1
    assert offline["predicted_lift"] == pytest.approx(predicted)
    observed = treatment["metrics"]["answer-quality"]["relative_lift"]
    assert observed > 0
    assert offline["observed_lift"] == pytest.approx(observed)
    assert offline["metric"] == "answer-quality"
    assert offline["agrees"] is (predicted > 0)

    page = await ui_admin.get(f"/ui/online/{KEY}")
    assert page.status_code == 200, page.text[:500]
    assert "Offline vs online" in page.text
    assert f"{predicted * 100:+.1f} %" in page.text
    assert f"{observed * 100:+.1f} %" in page.text


async def test_arms_without_a_promoted_variant_carry_no_offline_block(
    client: httpx.AsyncClient, owner, agent, bootstrap_headers
):
    hand_made = await make_variant(client, owner, agent, name="Hot")
    body = _models(even_arms("hot", agent_variant_id=hand_made["id"]))
    await create_online_experiment(client, bootstrap_headers, body)

    found = (await client.get(RESULTS, headers=bootstrap_headers)).json()[0]["variants"]

    assert all("offline" not in arm for arm in found)
