"""Provider credentials of a project through the API, on both databases: stored sealed, never
read back, replaced by setting them again, and usable by that project's sweeps only."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from promptlooper.sweeps.credentials.models import ProviderCredential
from tests.factories import Actor, make_actor
from tests.sweeps.conftest import create, document, run_to_end

SECRET = "sk-proj-0123456789-abcdefghij"


def url(project_id: str, name: str = "") -> str:
    return f"/api/projects/{project_id}/credentials" + (f"/{name}" if name else "")


async def put(
    client: httpx.AsyncClient, actor: Actor, project_id: str, name: str, **body: str
) -> httpx.Response:
    body = {"provider": "openai", "secret": SECRET, **body}
    return await client.put(url(project_id, name), json=body, headers=actor.headers)


def openai_sweep(base_url: str, **provider: str) -> dict:
    return document(
        parameter_space={"model": ["openai:small"], "prompt": ["Hi {{ input }} reply:billing"]},
        providers={"openai": {"base_url": base_url, **provider}},
    )


async def test_a_credential_is_stored_sealed_and_no_read_returns_it(
    client: httpx.AsyncClient, owner: Actor, project_id: str, sessionmaker
):
    created = await put(client, owner, project_id, "team-openai")
    listed = await client.get(url(project_id), headers=owner.headers)
    one = await client.get(url(project_id, "team-openai"), headers=owner.headers)

    assert created.status_code == 201, created.text
    assert created.json()["name"] == "team-openai"
    assert created.json()["provider"] == "openai"
    assert created.json()["created_by"] == owner.user.username
    assert listed.json()["count"] == 1
    assert listed.json()["data"] == [one.json()]
    for response in (created, listed, one):
        assert SECRET not in response.text
        assert "secret" not in response.text
    async with sessionmaker() as session:
        sealed = await session.scalar(select(ProviderCredential.sealed))
    assert sealed
    assert SECRET not in sealed


async def test_setting_again_rotates_and_delete_removes(
    client: httpx.AsyncClient, owner: Actor, project_id: str, sessionmaker
):
    first = await put(client, owner, project_id, "k")
    async with sessionmaker() as session:
        sealed_before = await session.scalar(select(ProviderCredential.sealed))
    again = await put(client, owner, project_id, "k", provider="anthropic", secret="sk-ant-new")
    async with sessionmaker() as session:
        sealed_after = await session.scalar(select(ProviderCredential.sealed))
    deleted = await client.delete(url(project_id, "k"), headers=owner.headers)
    gone = await client.get(url(project_id, "k"), headers=owner.headers)

    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json()["provider"] == "anthropic"
    assert again.json()["created_at"] == first.json()["created_at"]
    assert again.json()["updated_at"] > first.json()["updated_at"]
    assert sealed_after != sealed_before
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert gone.json() == {"detail": "No credential named 'k' in this project"}


async def test_only_the_projects_owner_and_admins_reach_its_credentials(
    client: httpx.AsyncClient, owner: Actor, project_id: str, sessionmaker
):
    await put(client, owner, project_id, "k")
    intruder = await make_actor(sessionmaker, "intruder")
    admin = await make_actor(sessionmaker, "root", is_admin=True)

    denied = [
        await client.get(url(project_id), headers=intruder.headers),
        await client.get(url(project_id, "k"), headers=intruder.headers),
        await put(client, intruder, project_id, "k", secret="sk-intruder"),
        await client.delete(url(project_id, "k"), headers=intruder.headers),
    ]
    anonymous = await client.get(url(project_id))
    by_admin = await client.get(url(project_id), headers=admin.headers)
    missing_project = await client.get(url(str(uuid.uuid4())), headers=owner.headers)

    assert [r.status_code for r in denied] == [403] * 4
    assert anonymous.status_code == 401
    assert by_admin.json()["count"] == 1
    assert missing_project.status_code == 404


@pytest.mark.parametrize(
    ("name", "body", "where"),
    [
        ("k", {"provider": "mock"}, ["body", "provider"]),
        ("k", {"provider": "python"}, ["body", "provider"]),
        ("k", {"secret": ""}, ["body", "secret"]),
        ("k", {"secret": "sk-with space"}, ["body", "secret"]),
        ("k", {"secret": "sk-line\r\nX-Injected: 1"}, ["body", "secret"]),
        ("k", {"secret": "sk-trailing-newline\n"}, ["body", "secret"]),
        ("k", {"secret": "x" * 4097}, ["body", "secret"]),
        ("k", {"colour": "blue"}, ["body", "colour"]),
        ("-leading-dash", {}, ["path", "name"]),
        ("n" * 65, {}, ["path", "name"]),
    ],
)
async def test_bad_credentials_are_422_naming_the_field_and_never_echo_the_secret(
    client: httpx.AsyncClient,
    owner: Actor,
    project_id: str,
    sessionmaker,
    name: str,
    body: dict,
    where: list[str],
):
    response = await put(client, owner, project_id, name, **body)

    assert response.status_code == 422, response.text
    assert [e["loc"] for e in response.json()["detail"]] == [where]
    assert SECRET not in response.text
    assert "sk-" not in response.text
    async with sessionmaker() as session:
        assert await session.scalar(select(ProviderCredential.id)) is None


async def test_a_sweep_sends_its_projects_credential_and_no_other(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner: Actor,
    project_id: str,
    sessionmaker,
    fake_openai,
):
    server, base_url = fake_openai
    await put(client, owner, project_id, "team-openai")
    other_project = (
        await client.post("/api/projects", json={"name": "other"}, headers=owner.headers)
    ).json()["id"]
    stranger = await make_actor(sessionmaker, "stranger")
    strangers_project = (
        await client.post("/api/projects", json={"name": "theirs"}, headers=stranger.headers)
    ).json()["id"]
    await put(client, stranger, strangers_project, "theirs", secret="sk-stranger")

    experiment = await create(
        client, owner, project_id, openai_sweep(base_url, credential="team-openai")
    )
    final = await run_to_end(client, app, owner, experiment["id"])
    elsewhere = await client.post(
        f"/api/projects/{other_project}/experiments",
        json=openai_sweep(base_url, credential="team-openai"),
        headers=owner.headers,
    )
    not_mine = await client.post(
        f"/api/projects/{project_id}/experiments",
        json=openai_sweep(base_url, credential="theirs"),
        headers=owner.headers,
    )
    wrong_type = await client.post(
        f"/api/projects/{project_id}/experiments",
        json=document(
            parameter_space={"model": ["claude:x"], "prompt": ["Hi"]},
            providers={"claude": {"type": "anthropic", "credential": "team-openai"}},
        ),
        headers=owner.headers,
    )
    stored = (
        await client.get(f"/api/experiments/{experiment['id']}", headers=owner.headers)
    ).json()

    assert final["status"] == "completed"
    assert final["progress"]["completed"] == 3
    assert {h["Authorization"] for h in server.headers} == {f"Bearer {SECRET}"}
    assert stored["spec"]["providers"]["openai"]["credential"] == "team-openai"
    assert SECRET not in str(stored)
    assert (elsewhere.status_code, not_mine.status_code) == (422, 422)
    assert elsewhere.json()["detail"] == (
        "providers.openai.credential: this project has no credential named 'team-openai'"
    )
    assert not_mine.json()["detail"] == (
        "providers.openai.credential: this project has no credential named 'theirs'"
    )
    assert wrong_type.status_code == 422
    assert wrong_type.json()["detail"] == (
        "providers.claude.credential: 'team-openai' is a credential for openai, "
        "not for this anthropic provider"
    )
    assert server.requests == 3


async def test_a_credential_deleted_or_sealed_with_another_key_is_refused_at_start(
    client: httpx.AsyncClient, app: FastAPI, owner: Actor, project_id: str, fake_openai
):
    _, base_url = fake_openai
    await put(client, owner, project_id, "k")
    await put(client, owner, project_id, "rotated-away")
    deleted_later = await create(client, owner, project_id, openai_sweep(base_url, credential="k"))
    resealed = await create(
        client, owner, project_id, openai_sweep(base_url, credential="rotated-away")
    )
    await client.delete(url(project_id, "k"), headers=owner.headers)
    async with app.state.sessionmaker() as session:
        credential = await session.scalar(
            select(ProviderCredential).where(ProviderCredential.name == "rotated-away")
        )
        assert credential is not None
        credential.sealed = "gAAAAA-sealed-with-a-key-this-server-does-not-have"
        await session.commit()

    starts = [
        await client.post(f"/api/experiments/{e['id']}/start", headers=owner.headers)
        for e in (deleted_later, resealed)
    ]

    assert [s.status_code for s in starts] == [422, 422]
    assert starts[0].json()["detail"] == (
        "providers.openai.credential: this project has no credential named 'k'"
    )
    assert "sealed with another CREDENTIALS_KEY" in starts[1].json()["detail"]
    for e in (deleted_later, resealed):
        after = (await client.get(f"/api/experiments/{e['id']}", headers=owner.headers)).json()
        assert after["status"] == "draft"


async def test_deleting_the_project_deletes_its_credentials(
    client: httpx.AsyncClient, owner: Actor, project_id: str, sessionmaker
):
    await put(client, owner, project_id, "k")

    await client.delete(f"/api/projects/{project_id}", headers=owner.headers)

    async with sessionmaker() as session:
        assert await session.scalar(select(ProviderCredential.id)) is None
