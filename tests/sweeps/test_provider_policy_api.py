"""What a sweep sent to the server may use, on both databases: only the keys the server offers
(``PROVIDER_KEY_ENVS``), and unless its owner is an admin only the hosts it allows
(``PROVIDER_ALLOWED_HOSTS``); link-local and metadata hosts never."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from promptlooper.auth.models import User
from promptlooper.settings import Settings
from tests.conftest import BOOTSTRAP_KEY, TEST_JWT_SECRET
from tests.factories import Actor, make_actor
from tests.sweeps.conftest import create, document, run_to_end

SERVER_SECRETS = {
    "API_KEY": BOOTSTRAP_KEY,
    "JWT_SECRET": TEST_JWT_SECRET,
    "DATABASE_URL": "postgresql://postgres:hunter2@db/promptlooper",
    "PL_TEST_PRIVATE": "a variable nobody offered",
}


@pytest.fixture
def settings(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """A server whose environment holds its own secrets, a key it offers to sweeps and one it
    offers but has not set. Hosts are the default list."""
    for name, value in SERVER_SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-offered-openai")
    monkeypatch.setenv("PL_TEST_TEAM_KEY", "sk-offered-team")
    monkeypatch.delenv("PL_TEST_OFFERED_UNSET", raising=False)
    monkeypatch.delenv("PL_TEST_NOWHERE", raising=False)
    offered = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "PL_TEST_TEAM_KEY", "PL_TEST_OFFERED_UNSET"]
    defaults = Settings.model_fields["provider_allowed_hosts"].default
    return settings.model_copy(
        update={"provider_key_envs": offered, "provider_allowed_hosts": defaults}
    )


def openai_sweep(**provider: object) -> dict:
    return document(
        parameter_space={"model": ["openai:small"], "prompt": ["Hi {{ input }} reply:billing"]},
        providers={"openai": provider},
        cache=False,
    )


async def post(client: httpx.AsyncClient, actor: Actor, project_id: str, doc: dict):
    return await client.post(
        f"/api/projects/{project_id}/experiments", json=doc, headers=actor.headers
    )


@pytest.fixture
async def admin(sessionmaker) -> Actor:
    return await make_actor(sessionmaker, "root", is_admin=True)


@pytest.fixture
async def admin_project(client: httpx.AsyncClient, admin: Actor) -> str:
    response = await client.post("/api/projects", json={"name": "ops"}, headers=admin.headers)
    return response.json()["id"]


async def test_a_sweep_names_only_offered_keys_and_cannot_tell_what_is_set(
    client: httpx.AsyncClient, admin: Actor, admin_project: str, owner: Actor, project_id: str
):
    """Neither a user nor an admin's sweep can name the server's own settings; the answer for
    a set variable, an unset one and an offered but unset one is the same sentence."""
    names = [*SERVER_SECRETS, "PL_TEST_NOWHERE", "PL_TEST_OFFERED_UNSET"]
    answers = {}
    for actor, project in ((owner, project_id), (admin, admin_project)):
        for name in names:
            response = await post(
                client,
                actor,
                project,
                openai_sweep(base_url="https://api.openai.com/v1", api_key_env=name),
            )
            assert response.status_code == 422, (name, response.text)
            answers[actor.user.username, name] = response.json()["detail"].replace(name, "NAME")

    assert len(set(answers.values())) == 1
    (answer,) = set(answers.values())
    assert answer.startswith("providers.openai.api_key_env: NAME is not a key this server offers")
    for value in SERVER_SECRETS.values():
        assert value not in answer


async def test_offered_keys_reach_the_provider(
    client: httpx.AsyncClient, app: FastAPI, admin: Actor, admin_project: str, fake_openai
):
    server, base_url = fake_openai
    named = await create(
        client,
        admin,
        admin_project,
        openai_sweep(base_url=base_url, api_key_env="PL_TEST_TEAM_KEY"),
    )
    await run_to_end(client, app, admin, named["id"])
    named_headers = {h["Authorization"] for h in server.headers}
    server.headers.clear()
    default = await create(client, admin, admin_project, openai_sweep(base_url=base_url))
    await run_to_end(client, app, admin, default["id"])

    assert named_headers == {"Bearer sk-offered-team"}
    assert {h["Authorization"] for h in server.headers} == {"Bearer sk-offered-openai"}


REFUSED_FOR_USERS = [
    "http://127.0.0.1:8001/v1",
    "http://localhost:8001/v1",
    "http://10.0.0.5/v1",
    "http://192.168.1.1/v1",
    "http://[::1]:8001/v1",
    "http://0x7f.1:8001/v1",
    "http://2130706433/v1",
    "https://api.openai.com.attacker.example/v1",
    "https://api.openai.com@127.0.0.1/v1",
]
ALWAYS_REFUSED = [
    "http://169.254.169.254/latest/meta-data",
    "http://metadata.google.internal/computeMetadata/v1",
    "http://[fe80::1]/v1",
    "http://[::ffff:169.254.169.254]/v1",
    "http://0251.0376.0251.0376/v1",
    "http://169.254.43518/v1",
    "http://169.254.170.2/v1",
]


@pytest.mark.parametrize("base_url", REFUSED_FOR_USERS)
async def test_a_users_sweep_reaches_only_the_allowed_hosts(
    client: httpx.AsyncClient,
    owner: Actor,
    project_id: str,
    admin: Actor,
    admin_project: str,
    base_url: str,
):
    refused = await post(client, owner, project_id, openai_sweep(base_url=base_url))
    by_admin = await post(client, admin, admin_project, openai_sweep(base_url=base_url))
    # An admin creating it in the user's project gets the user's rights: they start it.
    for_user = await post(client, admin, project_id, openai_sweep(base_url=base_url))

    assert refused.status_code == 422
    assert refused.json()["detail"].startswith("providers.openai.base_url: ")
    assert "is not a host this server lets your sweeps reach" in refused.json()["detail"]
    assert by_admin.status_code == 201, by_admin.text
    assert for_user.status_code == 422


@pytest.mark.parametrize(
    "base_url",
    ["https://api.openai.com/v1", "https://API.OpenAI.com./v1", "https://api.anthropic.com"],
)
async def test_the_default_hosts_are_allowed(
    client: httpx.AsyncClient, owner: Actor, project_id: str, base_url: str
):
    response = await post(client, owner, project_id, openai_sweep(base_url=base_url))

    assert response.status_code == 201, response.text


@pytest.mark.parametrize("base_url", ALWAYS_REFUSED)
async def test_metadata_and_link_local_hosts_are_refused_even_to_admins(
    client: httpx.AsyncClient, admin: Actor, admin_project: str, base_url: str
):
    response = await post(client, admin, admin_project, openai_sweep(base_url=base_url))

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("providers.openai.base_url: ")
    assert "provider calls never go there" in detail


@pytest.mark.parametrize(
    "base_url",
    ["http://evil.example\\@api.openai.com/v1", "http://api.openai.com%2eevil.example/v1"],
)
async def test_escaped_or_backslashed_hosts_are_refused(
    client: httpx.AsyncClient, admin: Actor, admin_project: str, base_url: str
):
    response = await post(client, admin, admin_project, openai_sweep(base_url=base_url))

    assert response.status_code == 422
    assert response.json()["detail"].startswith("providers.openai.base_url: the host must be")


async def test_an_agent_sweep_is_held_to_the_same_rules(
    client: httpx.AsyncClient, owner: Actor, project_id: str
):
    agent = await client.post(
        f"/api/projects/{project_id}/agents",
        json={"name": "Triage", "model_provider": "openai", "model_name": "small"},
        headers=owner.headers,
    )
    body = {"dataset": {"rows": [{"input": "x"}]}, "parameter_space": {"prompt": ["{{ input }}"]}}
    sweeps = [
        {**body, "providers": {"openai": {"base_url": "http://127.0.0.1:8001/v1"}}},
        {**body, "providers": {"openai": {"api_key_env": "API_KEY"}}},
        {**body, "providers": {"openai": {"credential": "nope"}}},
    ]

    answers = [
        await client.post(
            f"/api/agents/{agent.json()['id']}/experiments", json=sweep, headers=owner.headers
        )
        for sweep in sweeps
    ]

    assert [a.status_code for a in answers] == [422, 422, 422]
    assert answers[0].json()["detail"].startswith("providers.openai.base_url: 127.0.0.1 is not")
    assert answers[1].json()["detail"].startswith("providers.openai.api_key_env: API_KEY is not")
    assert answers[2].json()["detail"].startswith("providers.openai.credential: this project")


async def test_start_judges_again_with_the_owners_rights_of_now(
    client: httpx.AsyncClient, app: FastAPI, sessionmaker, fake_openai
):
    server, base_url = fake_openai
    demoted = await make_actor(sessionmaker, "demoted", is_admin=True)
    project = await client.post("/api/projects", json={"name": "p"}, headers=demoted.headers)
    experiment = await create(
        client, demoted, project.json()["id"], openai_sweep(base_url=base_url)
    )
    async with sessionmaker() as session:
        await session.execute(update(User).where(User.id == demoted.id).values(is_admin=False))
        await session.commit()
    admin = await make_actor(sessionmaker, "still-root", is_admin=True)

    started = await client.post(f"/api/experiments/{experiment['id']}/start", headers=admin.headers)
    after = await client.get(f"/api/experiments/{experiment['id']}", headers=admin.headers)

    assert started.status_code == 422
    assert started.json()["detail"].startswith("providers.openai.base_url: 127.0.0.1 is not")
    assert after.json()["status"] == "draft"
    assert server.requests == 0
