"""Comparing two configs paired row by row: within one experiment, across a baseline and a
candidate experiment over the same dataset, and the regression gate's decision."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from scipy import stats as sp

from tests.sweeps.conftest import ROWS_60, finished, triage


async def _finished(client, app, owner, project_id, doc) -> str:
    experiment, _board = await finished(client, app, owner, project_id, doc)
    return experiment["id"]


async def test_a_candidate_that_lost_is_a_significant_regression_with_its_losses_first(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    baseline = await _finished(client, app, owner, project_id, triage("mock:large"))
    candidate = await _finished(client, app, owner, project_id, triage("mock:small"))

    response = await client.get(
        "/api/experiments/compare",
        params={"baseline": baseline, "candidate": candidate, "margin": 0.05, "limit": 5},
        headers=owner.headers,
    )

    assert response.status_code == 200, response.text
    body = response.json()
    base_rows = body["rows"]
    assert body["rows_total"] == 60
    assert len(base_rows) == 5
    assert [r["change"] for r in base_rows] == sorted(r["change"] for r in base_rows)
    assert base_rows[0]["change"] == -1.0  # a row the candidate got wrong and the baseline right
    assert base_rows[0]["inputs"]["input"].startswith("Ticket ")
    assert base_rows[0]["baseline_output"] != base_rows[0]["candidate_output"]
    paired = body["paired"]
    assert paired["test"] == "mcnemar"
    assert paired["rows"] == 60
    assert paired["p_value"] == pytest.approx(
        sp.binomtest(paired["wins"], paired["wins"] + paired["losses"]).pvalue
    )
    assert paired["diff"] < 0
    assert paired["significant"]
    assert body["gate"]["failed"]
    assert body["gate"]["reason"].startswith("regression:")
    assert body["baseline"]["interval"]["method"] == "wilson"

    reverse = await client.get(
        "/api/experiments/compare",
        params={"baseline": candidate, "candidate": baseline, "margin": 0.05},
        headers=owner.headers,
    )
    assert reverse.json()["gate"]["failed"] is False
    assert reverse.json()["gate"]["reason"].startswith("improvement:")
    assert reverse.json()["paired"]["diff"] == pytest.approx(-paired["diff"])


async def test_two_configs_of_one_experiment_default_to_the_leader_and_runner_up(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    doc = triage("mock:large", "mock:small")
    sweep, board = await finished(client, app, owner, project_id, doc)
    experiment = sweep["id"]

    found = (
        await client.get(f"/api/experiments/{experiment}/compare", headers=owner.headers)
    ).json()
    prefix = await client.get(
        f"/api/experiments/{experiment}/compare",
        params={"a": board[1]["config_hash"][:8], "b": board[0]["config_hash"]},
        headers=owner.headers,
    )

    assert found["baseline"]["config_hash"] == board[0]["config_hash"]
    assert found["candidate"]["config_hash"] == board[1]["config_hash"]
    assert found["gate"] is None
    versus = board[1]["versus_leader"]
    assert found["paired"]["diff"] == pytest.approx(versus["diff"])
    assert found["paired"]["p_value"] == pytest.approx(versus["p_value"])
    assert board[1]["tied_with_leader"] is False
    assert board[0]["tied_with_leader"] is None
    assert board[0]["interval"]["n"] == 60
    assert prefix.json()["paired"]["diff"] == pytest.approx(-versus["diff"])


async def test_bad_comparisons_are_refused_naming_the_field(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    experiment = await _finished(client, app, owner, project_id, triage("mock:large"))
    other_rows = triage("mock:large", dataset={"rows": ROWS_60[:30]})
    other = await _finished(client, app, owner, project_id, other_rows)
    url = f"/api/experiments/{experiment}/compare"

    single = await client.get(url, headers=owner.headers)
    same = await client.get(url, params={"a": "", "b": ""}, headers=owner.headers)
    unknown = await client.get(url, params={"a": "ffffffff"}, headers=owner.headers)
    margin = await client.get(url, params={"margin": -1}, headers=owner.headers)
    across = await client.get(
        "/api/experiments/compare",
        params={"baseline": experiment, "candidate": other},
        headers=owner.headers,
    )
    missing = await client.get(
        "/api/experiments/compare", params={"baseline": experiment}, headers=owner.headers
    )

    assert single.status_code == 422
    assert "b: the experiment has one scored config" in single.text
    assert same.status_code == 422
    assert unknown.status_code == 404
    assert margin.status_code == 422
    assert "margin" in margin.text
    for bad in ("NaN", "-1", "1.5", "inf"):
        refused = await client.get(url, params={"margin": bad}, headers=owner.headers)
        assert refused.status_code == 422, bad
        (error,) = refused.json()["detail"]
        assert error["loc"] == ["query", "margin"]
        assert "margin must be a number between 0 and 1" in error["msg"]
    assert across.status_code == 422
    assert "candidate: its dataset differs" in across.text
    assert missing.status_code == 422
    assert "candidate" in missing.text


async def test_exports_say_whether_the_winner_is_significantly_better(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    doc = triage("mock:large", "mock:small")
    sweep, board = await finished(client, app, owner, project_id, doc)
    experiment = sweep["id"]

    best = (
        await client.get(f"/api/export/experiments/{experiment}/best", headers=owner.headers)
    ).json()
    env = await client.get(f"/api/export/experiments/{experiment}/env", headers=owner.headers)
    report = await client.get(f"/api/export/experiments/{experiment}/report", headers=owner.headers)

    assert best["config_hash"] == board[0]["config_hash"]
    assert best["significantly_better"] is True
    runner_up = best["runner_up"]
    assert runner_up["config_hash"] == board[1]["config_hash"]
    assert runner_up["lead"] == pytest.approx(-board[1]["versus_leader"]["diff"])
    assert runner_up["p_adjusted"] == pytest.approx(board[1]["versus_leader"]["p_adjusted"])
    assert runner_up["rows"] == 60
    assert runner_up["test"] == "mcnemar"
    assert best["score_interval"]["method"] == "wilson"
    assert "runner-up" in env.text
    assert "significantly better, lead +0." in env.text
    text = report.text
    assert "| Rank | Weighted Score | 95 % interval | vs #1 (adjusted p) | Runs |" in text
    assert "leads with" in text
    assert "clearly ahead of #2" in text
