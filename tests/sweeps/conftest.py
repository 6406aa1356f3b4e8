"""Fixtures for sweep tests: a project to work in, documents, and waiting for a sweep."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.settings import Settings
from tests.factories import Actor, make_actor
from tests.fakes.openai_server import FakeOpenAI, start

ROWS = [
    {"input": "My card was charged twice", "expected": "billing"},
    {"input": "The app crashes on start", "expected": "bug"},
    {"input": "I forgot my password", "expected": "account"},
]

BASE_DOCUMENT: dict[str, Any] = {
    "name": "ticket-triage",
    "description": "Classify support tickets",
    "parameter_space": {
        "model": ["mock:small", "mock:large"],
        "temperature": [0.0, 0.7],
        "prompt": ["Classify: {{ input }}. One word.", "Ticket: {{ input }}"],
    },
    "dataset": {"rows": ROWS},
    "scorers": [
        {"name": "accuracy", "type": "exact_match", "weight": 0.7, "ignore_case": True},
        {"name": "brevity", "type": "length", "weight": 0.3, "max": 20},
    ],
    "providers": {
        "mock": {
            "models": {"small": {"accuracy": 0.5}, "large": {"accuracy": 0.95}},
            "knowledge": {"charged": "billing", "crash": "bug", "password": "account"},
        }
    },
    "concurrency": 4,
}


def document(**changes: Any) -> dict[str, Any]:
    doc = copy.deepcopy(BASE_DOCUMENT)
    doc.update(changes)
    return doc


LABELS = [("charged twice", "billing"), ("crashes on start", "bug"), ("password", "account")]
ROWS_60 = [
    {"input": f"Ticket {i}: it {LABELS[i % 3][0]}", "expected": LABELS[i % 3][1]} for i in range(60)
]


def triage(*models: str, **changes) -> dict:
    """One config per model answering 60 rows, scored pass/fail: two of them differ by the
    models' accuracy, row by row."""
    return document(
        **{
            "parameter_space": {
                "model": list(models),
                "prompt": ["Classify: {{ input }}. One word."],
            },
            "dataset": {"rows": ROWS_60},
            "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
            **changes,
        }
    )


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The fake providers here listen on 127.0.0.1, which a non-admin's sweep may not reach
    unless the server lists it (``PROVIDER_ALLOWED_HOSTS``)."""
    return settings.model_copy(update={"provider_allowed_hosts": ["127.0.0.0/8"]})


@pytest.fixture
async def owner(sessionmaker) -> Actor:
    return await make_actor(sessionmaker, "owner")


@pytest.fixture
async def project_id(client: httpx.AsyncClient, owner: Actor) -> str:
    response = await client.post("/api/projects", json={"name": "sweeps"}, headers=owner.headers)
    return response.json()["id"]


async def create(client: httpx.AsyncClient, owner: Actor, project_id: str, doc: dict) -> dict:
    response = await client.post(
        f"/api/projects/{project_id}/experiments", json=doc, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


async def run_to_end(
    client: httpx.AsyncClient, app: FastAPI, owner: Actor, experiment_id: str
) -> dict:
    started = await client.post(f"/api/experiments/{experiment_id}/start", headers=owner.headers)
    assert started.status_code == 202, started.text
    await asyncio.wait_for(app.state.sweep_jobs.wait(uuid.UUID(experiment_id)), 30)
    return (await client.get(f"/api/experiments/{experiment_id}", headers=owner.headers)).json()


async def finished(
    client: httpx.AsyncClient, app: FastAPI, owner: Actor, project_id: str, doc: dict
) -> tuple[dict, list[dict]]:
    """A sweep of ``doc`` created and run to completion, with its leaderboard's rows (best
    first): what comparing or promoting configs starts from."""
    experiment = await create(client, owner, project_id, doc)
    done = await run_to_end(client, app, owner, experiment["id"])
    assert done["status"] == "completed", done
    board = await client.get(
        f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers
    )
    assert board.status_code == 200, board.text
    return experiment, board.json()["data"]


@pytest.fixture
async def fake_openai() -> AsyncIterator[tuple[FakeOpenAI, str]]:
    server = FakeOpenAI()
    runner, url = await start(server)
    yield server, url
    await runner.cleanup()
