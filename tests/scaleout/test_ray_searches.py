"""Adaptive searches (racing, Optuna) are refused, with one clear line, where a Ray cluster is
configured: they decide each step and check their budget in the process that runs them."""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.settings import Settings
from tests.cli.inprocess import Invoke
from tests.sweeps.conftest import create
from tests.sweeps.test_search_racing import racing

NOWHERE = "127.0.0.1:9"
"""A Ray address nothing listens on: a refusal must come before any attempt to join."""
REFUSED = "search: a racing search does not run on a Ray cluster"


def _optuna() -> dict:
    doc = racing({"good": 0.9, "bad": 0.3}, n_rows=6)
    doc["search"] = {"strategy": "optuna", "n_trials": 2}
    return doc


@pytest.mark.parametrize(
    ("doc", "refused"),
    [
        (racing({"good": 0.9, "bad": 0.3}, n_rows=6), REFUSED),
        (_optuna(), "search: a optuna search does not run on a Ray cluster"),
    ],
)
def test_sweep_run_with_ray_refuses_an_adaptive_search_and_creates_nothing(
    cli: Invoke, tmp_path: Path, doc: dict, refused: str
):
    path = tmp_path / "search.json"
    path.write_text(json.dumps(doc))

    result = cli("sweep", "run", str(path), "--ray", NOWHERE)

    assert result.code == 2
    (line,) = result.err.strip().splitlines()
    assert refused in line
    assert "without --ray and RAY_ADDRESS" in line  # and how to run it
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("SELECT count(*) FROM experiments").fetchone() == (0,)


def test_sweep_resume_with_ray_refuses_a_search_started_without(cli: Invoke, tmp_path: Path):
    path = tmp_path / "search.json"
    path.write_text(json.dumps(racing({"good": 0.9, "bad": 0.3}, n_rows=6)))
    assert cli("sweep", "run", str(path)).code == 0
    with sqlite3.connect(tmp_path / "cli.db") as db:
        (experiment_id,) = db.execute("SELECT id FROM experiments").fetchone()
    experiment = str(uuid.UUID(experiment_id))

    result = cli("sweep", "resume", experiment, "--ray", NOWHERE)

    assert result.code == 2
    assert REFUSED in result.err
    assert len(result.err.strip().splitlines()) == 1


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"ray_address": NOWHERE})


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_a_server_with_ray_refuses_to_start_an_adaptive_search(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    experiment = await create(
        client, owner, project_id, racing({"good": 0.9, "bad": 0.3}, n_rows=6)
    )

    started = await client.post(f"/api/experiments/{experiment['id']}/start", headers=owner.headers)
    shown = await client.get(f"/api/experiments/{experiment['id']}", headers=owner.headers)

    assert started.status_code == 422
    assert REFUSED in started.text
    assert shown.json()["status"] == "draft"
