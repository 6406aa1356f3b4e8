"""Rollback re-applies an old revision as a new one, for agents and variants."""

from __future__ import annotations

import uuid

import httpx

from tests.factories import make_actor
from tests.variants.test_agents_api import url


async def _revisions(client: httpx.AsyncClient, owner, agent: dict) -> list[dict]:
    response = await client.get(url(agent, "revisions"), headers=owner.headers)
    assert response.status_code == 200
    return response.json()["data"]


async def test_rolling_back_the_agent_restores_its_base_as_a_new_revision(
    client: httpx.AsyncClient, owner, agent
):
    await client.patch(url(agent), json={"model_name": "gpt-4o"}, headers=owner.headers)
    await client.patch(url(agent), json={"temperature": 1.1}, headers=owner.headers)
    first = (await _revisions(client, owner, agent))[0]

    response = await client.post(
        url(agent, "revisions", first["id"], "rollback"), headers=owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target"] == "agent"
    assert body["variant"] is None
    assert body["agent"]["revision"] == 4
    assert body["agent"]["config"] == first["values"]
    latest = (await _revisions(client, owner, agent))[-1]
    assert latest["number"] == 4
    assert latest["changed_fields"] == ["model_name", "temperature"]
    resolved = (await client.get(url(agent, "config"), headers=owner.headers)).json()
    assert resolved["config"]["model_name"] == "gpt-4o-mini"


async def test_rolling_back_a_variant_restores_its_overrides_including_inherited_fields(
    client: httpx.AsyncClient, owner, agent
):
    variant = (
        await client.post(
            url(agent, "variants"), json={"name": "Hot", "temperature": 0.9}, headers=owner.headers
        )
    ).json()
    variant_url = url(agent, "variants", variant["id"])
    await client.patch(
        variant_url, json={"temperature": 1.5, "model_name": "gpt-4o"}, headers=owner.headers
    )
    original = next(
        r for r in await _revisions(client, owner, agent) if r["variant_id"] == variant["id"]
    )

    response = await client.post(
        url(agent, "revisions", original["id"], "rollback"), headers=owner.headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["target"] == "variant"
    assert body["variant"]["overrides"] == {"temperature": 0.9}
    assert body["variant"]["config"]["model_name"] == "gpt-4o-mini"  # inherited again
    assert body["variant"]["revision"] == 3


async def test_rolling_back_to_the_current_revision_writes_nothing(
    client: httpx.AsyncClient, owner, agent
):
    current = (await _revisions(client, owner, agent))[-1]

    response = await client.post(
        url(agent, "revisions", current["id"], "rollback"), headers=owner.headers
    )

    assert response.status_code == 200
    assert response.json()["agent"]["revision"] == 1
    assert len(await _revisions(client, owner, agent)) == 1


async def test_rollback_of_an_unknown_or_foreign_revision_is_404_and_others_are_denied(
    client: httpx.AsyncClient, sessionmaker, owner, agent, project_id
):
    missing = await client.post(
        url(agent, "revisions", str(uuid.uuid4()), "rollback"), headers=owner.headers
    )
    assert missing.status_code == 404
    assert "Revision not found" in missing.json()["detail"]

    other_agent = (
        await client.post(
            f"/api/projects/{project_id}/agents",
            json={"name": "Other", "model_provider": "openai", "model_name": "x"},
            headers=owner.headers,
        )
    ).json()
    foreign = (await _revisions(client, owner, other_agent))[0]
    crossed = await client.post(
        url(agent, "revisions", foreign["id"], "rollback"), headers=owner.headers
    )
    assert crossed.status_code == 404

    stranger = await make_actor(sessionmaker, "stranger")
    mine = (await _revisions(client, owner, agent))[0]
    denied = await client.post(
        url(agent, "revisions", mine["id"], "rollback"), headers=stranger.headers
    )
    assert denied.status_code == 403
