"""Racing searches: eliminations that must and must not happen, the budget, resuming."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select

from promptlooper.sweeps.models import Run
from tests.sweeps.conftest import create, run_to_end

LABELS = {"charged": "billing", "crash": "bug", "password": "account"}


def rows(n: int) -> list[dict[str, Any]]:
    keywords = list(LABELS)
    return [
        {
            "input": f"Ticket {i}: something about {keywords[i % 3]}",
            "expected": LABELS[keywords[i % 3]],
        }
        for i in range(n)
    ]


def racing(models: dict[str, float], n_rows: int = 80, **search: Any) -> dict[str, Any]:
    return {
        "name": "race",
        "parameter_space": {
            "model": [f"mock:{name}" for name in models],
            "prompt": "Classify in one word: {{ input }}",
        },
        "dataset": {"rows": rows(n_rows)},
        "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
        "providers": {
            "mock": {
                "models": {name: {"accuracy": accuracy} for name, accuracy in models.items()},
                "knowledge": LABELS,
            }
        },
        "search": {"strategy": "racing", "first_slice": 20, **search},
        "concurrency": 4,
    }


async def _counts(sessionmaker, experiment_id: str) -> dict[str, dict[str, int]]:
    """Runs by model and status."""
    query = select(Run.parameters, Run.status).where(Run.experiment_id == uuid.UUID(experiment_id))
    counts: dict[str, dict[str, int]] = {}
    async with sessionmaker() as session:
        for parameters, status in await session.execute(query):
            per_status = counts.setdefault(parameters["model"], {})
            per_status[status] = per_status.get(status, 0) + 1
    return counts


async def test_a_config_far_behind_is_eliminated_after_the_first_slice(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(
        client, owner, project_id, racing({"good": 0.95, "close": 0.93, "bad": 0.1})
    )
    final = await run_to_end(client, app, owner, experiment["id"])
    board = (
        await client.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers)
    ).json()
    counts = await _counts(sessionmaker, experiment["id"])

    assert final["status"] == "completed", final
    assert counts["mock:bad"] == {"completed": 20, "skipped": 60}
    assert counts["mock:good"] == {"completed": 80}
    (elimination,) = board["eliminated"]
    assert elimination["parameters"] == {
        "model": "mock:bad",
        "prompt": "Classify in one word: {{ input }}",
    }
    assert elimination["rows"] == 20
    assert elimination["effect"] < -0.5
    assert elimination["p_value"] < 0.05
    assert elimination["lost_to"] in {e["config_hash"] for e in board["data"]}
