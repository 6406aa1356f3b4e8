"""Fixtures for agent and variant tests."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import Actor, make_actor

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
    response = await client.post(
        f"/api/projects/{project_id}/agents",
        json={"name": "Extractor", **BASE},
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()
