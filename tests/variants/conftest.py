"""Fixtures for agent and variant tests."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.factories import Actor, make_actor, online_experiment
from tests.sweeps.conftest import document

BASE = {
    "model_provider": "openai",
    "model_name": "gpt-4o-mini",
    "system_prompt": "You extract facts.",
    "user_prompt_template": "Extract from: {{ input }}",
    "temperature": 0.2,
    "max_tokens": 512,
    "timeout_seconds": 30,
    "max_retries": 2,
}


@pytest.fixture
async def owner(sessionmaker) -> Actor:
    return await make_actor(sessionmaker, "agent-owner")


@pytest.fixture
async def project_id(client: httpx.AsyncClient, owner: Actor) -> str:
    return (
        await client.post("/api/projects", json={"name": "agents"}, headers=owner.headers)
    ).json()["id"]


@pytest.fixture
async def agent(client: httpx.AsyncClient, owner: Actor, project_id: str) -> dict:
    return await make_agent(client, owner, project_id, "Extractor")


async def make_agent(client: httpx.AsyncClient, owner: Actor, project_id: str, name: str) -> dict:
    """An agent of the ``BASE`` config in the owner's project, made through the API."""
    response = await client.post(
        f"/api/projects/{project_id}/agents", json={"name": name, **BASE}, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


# Two single-stage configs, a small and a large model; ``seed`` maps to no agent field.
TWO_MODELS = document(
    parameter_space={
        "model": ["mock:small", "mock:large"],
        "temperature": [0.0],
        "prompt": ["Classify: {{ input }}. One word."],
        "seed": [7],
    }
)


async def make_variant(client: httpx.AsyncClient, owner: Actor, agent: dict, **fields: Any) -> dict:
    """A variant of ``agent`` made by its owner through the API."""
    response = await client.post(
        f"/api/agents/{agent['id']}/variants", json=fields, headers=owner.headers
    )
    assert response.status_code == 201, response.text
    return response.json()


def extractor_experiment(treatment_id: str, **changes: Any) -> dict:
    """Online experiment ``extractor_temperature``: the control (what the agent serves)
    against arm ``hot``, which serves agent variant ``treatment_id``."""
    return (
        online_experiment(
            "extractor_temperature",
            "hot",
            arm={"agent_variant_id": treatment_id},
            cookie_name="exp_extractor",
        )
        | changes
    )
