"""Provider keys and hosts through ``promptlooper serve`` as deployed: a user's sweep cannot send
the server's own settings anywhere, a project credential reaches its provider and never comes
back, and the hosts a user's sweep may call are the server's to say, at creation and at start."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import httpx
from sqlalchemy import text

from promptlooper.db.engine import create_engine
from promptlooper.settings import Settings
from tests.deployed import BOOTSTRAP_KEY, JWT_SECRET, Deployed, finished_experiment
from tests.fakes.openai_server import FakeOpenAI

SECRET = "sk-proj-e2e-0123456789abcdef"
ROTATED = "sk-proj-e2e-rotated-fedcba9876"
PASSWORD = "correct horse battery"


def sweep(providers: dict[str, Any], name: str = "keys") -> dict[str, Any]:
    return {
        "name": name,
        "parameter_space": {
            "model": ["openai:small"],
            "prompt": ["Classify: {{ input }} reply:ok"],
        },
        "dataset": {"rows": [{"input": "one"}, {"input": "two"}]},
        "providers": providers,
        "cache": False,
    }


def user_headers(http: httpx.Client, server: Deployed, username: str) -> dict[str, str]:
    """A new user (not an admin), authenticated by an API key of theirs."""
    created = http.post(
        "/api/users", json={"username": username, "password": PASSWORD}, headers=server.admin
    )
    assert created.status_code == 201, created.text
    login = http.post("/api/auth/login", json={"username": username, "password": PASSWORD})
    token = {"Authorization": f"Bearer {login.json()['access_token']}"}
    key = http.post("/api/keys", json={"name": "e2e"}, headers=token).json()["key"]
    return {"X-Api-Key": key}


def project(http: httpx.Client, headers: dict[str, str], name: str) -> str:
    response = http.post("/api/projects", json={"name": name}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()["id"]


def create(http: httpx.Client, headers: dict[str, str], project_id: str, doc: dict):
    return http.post(f"/api/projects/{project_id}/experiments", json=doc, headers=headers)


def run_to_end(http: httpx.Client, headers: dict[str, str], experiment_id: str) -> dict:
    started = http.post(f"/api/experiments/{experiment_id}/start", headers=headers)
    assert started.status_code == 202, started.text
    return finished_experiment(http, experiment_id, headers)


def test_a_users_sweep_cannot_send_the_servers_secrets_to_their_endpoint(
    serve: Callable[..., Deployed], fake_openai: tuple[FakeOpenAI, str]
):
    fake, url = fake_openai
    server = serve(
        PROVIDER_ALLOWED_HOSTS="127.0.0.1",  # the endpoint is reachable: only keys decide
        PROVIDER_KEY_ENVS="OPENAI_API_KEY,PL_OFFERED_UNSET",
        OPENAI_API_KEY="sk-offered",
    )
    names = ["API_KEY", "JWT_SECRET", "DATABASE_URL", "PL_NOT_SET", "PL_OFFERED_UNSET"]

    with server.client() as http:
        mallory = user_headers(http, server, "mallory")
        project_id = project(http, mallory, "mine")
        answers = {
            name: create(
                http,
                mallory,
                project_id,
                sweep({"openai": {"base_url": url, "api_key_env": name}}),
            )
            for name in names
        }
        agent = http.post(
            f"/api/projects/{project_id}/agents",
            json={"name": "Triage", "model_provider": "openai", "model_name": "small"},
            headers=mallory,
        ).json()
        around_agent = http.post(
            f"/api/agents/{agent['id']}/experiments",
            json={
                "dataset": {"rows": [{"input": "x"}]},
                "parameter_space": {"prompt": ["{{ input }}"]},
                "providers": {"openai": {"base_url": url, "api_key_env": "API_KEY"}},
            },
            headers=mallory,
        )
        experiments = http.get(f"/api/projects/{project_id}/experiments", headers=mallory)

    assert {r.status_code for r in answers.values()} == {422}
    sentences = {r.json()["detail"].replace(name, "NAME") for name, r in answers.items()}
    assert sentences == {
        "providers.openai.api_key_env: NAME is not a key this server offers to sweeps (an "
        "admin lists them in PROVIDER_KEY_ENVS), or store the key as a credential of the project"
    }
    assert around_agent.status_code == 422
    assert around_agent.json()["detail"].startswith("providers.openai.api_key_env: API_KEY is not")
    assert experiments.json()["count"] == 0
    assert fake.requests == 0
    log = server.log()
    for secret in (BOOTSTRAP_KEY, JWT_SECRET, server.env["DATABASE_URL"]):
        assert all(secret not in r.text for r in answers.values())
        assert secret not in log


def _sealed_values(database_url: str) -> list[str]:
    async def read() -> list[str]:
        engine = create_engine(Settings(_env_file=None, database_url=database_url))  # type: ignore[call-arg]
        try:
            async with engine.connect() as conn:
                rows = await conn.execute(text("SELECT sealed FROM provider_credentials"))
                return [row[0] for row in rows]
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _cli(server: Deployed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "promptlooper", *args],
        env=server.env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_project_credential_reaches_its_provider_and_never_comes_back(
    serve: Callable[..., Deployed], fake_openai: tuple[FakeOpenAI, str], deployed_db: str
):
    fake, url = fake_openai
    server = serve(PROVIDER_ALLOWED_HOSTS="127.0.0.1")
    keyed = {"openai": {"base_url": url, "credential": "team-openai"}}

    with server.client() as http:
        alice = user_headers(http, server, "alice")
        mine = project(http, alice, "triage")
        other = project(http, alice, "other")
        credentials = f"/api/projects/{mine}/credentials"
        stored = http.put(
            f"{credentials}/team-openai",
            json={"provider": "openai", "secret": SECRET},
            headers=alice,
        )
        sealed = _sealed_values(deployed_db)
        cli_list = _cli(server, "credential", "list", "--project", "triage", "--user", "alice")
        experiment = create(http, alice, mine, sweep(keyed)).json()
        finished = run_to_end(http, alice, experiment["id"])
        first_keys = {h["Authorization"] for h in fake.headers}
        runs = http.get(f"/api/experiments/{experiment['id']}/runs", headers=alice).json()
        reads = [
            http.get(credentials, headers=alice),
            http.get(f"{credentials}/team-openai", headers=alice),
            http.get(f"/api/experiments/{experiment['id']}", headers=alice),
            http.get(f"/api/projects/{mine}/experiments", headers=alice),
            http.get(f"/api/experiments/{experiment['id']}/runs", headers=alice),
            http.get(
                f"/api/experiments/{experiment['id']}/runs/{runs['data'][0]['id']}", headers=alice
            ),
            http.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=alice),
            http.get(f"/api/export/experiments/{experiment['id']}/report", headers=alice),
            http.get(f"/api/export/experiments/{experiment['id']}/yaml", headers=alice),
        ]

        # Another project of the same user, and another user, cannot name it.
        elsewhere = create(http, alice, other, sweep(keyed))
        bob = user_headers(http, server, "bob")
        bobs = project(http, bob, "bobs")
        by_bob = create(http, bob, bobs, sweep(keyed))
        bob_reads = http.get(credentials, headers=bob)

        # Setting it again rotates it: the next sweep sends the new key.
        fake.headers.clear()
        rotated = http.put(
            f"{credentials}/team-openai",
            json={"provider": "openai", "secret": ROTATED},
            headers=alice,
        )
        again = create(http, alice, mine, sweep(keyed, "again")).json()
        run_to_end(http, alice, again["id"])
        second_keys = {h["Authorization"] for h in fake.headers}

        # Deleted, it can no longer be used, even by an experiment created with it.
        deleted = http.delete(f"{credentials}/team-openai", headers=alice)
        restart = http.post(f"/api/experiments/{experiment['id']}/start", headers=alice)

    assert stored.status_code == 201, stored.text
    assert len(sealed) == 1
    assert SECRET not in sealed[0]
    assert cli_list.returncode == 0, cli_list.stderr
    assert "team-openai" in cli_list.stdout
    assert "alice" in cli_list.stdout
    assert SECRET not in cli_list.stdout + cli_list.stderr
    assert finished["status"] == "completed", finished
    assert finished["progress"]["completed"] == 2
    assert first_keys == {f"Bearer {SECRET}"}
    for response in (stored, *reads):
        assert response.status_code in (200, 201), response.text
        assert SECRET not in response.text
    assert (elsewhere.status_code, by_bob.status_code, bob_reads.status_code) == (422, 422, 403)
    assert elsewhere.json()["detail"] == (
        "providers.openai.credential: this project has no credential named 'team-openai'"
    )
    assert rotated.status_code == 200
    assert second_keys == {f"Bearer {ROTATED}"}
    assert deleted.status_code == 204
    assert restart.status_code == 422
    assert SECRET not in server.log()
    assert ROTATED not in server.log()
    assert fake.requests == 4


def test_allowed_hosts_decide_for_users_at_creation_and_again_at_start(
    serve: Callable[..., Deployed], fake_openai: tuple[FakeOpenAI, str]
):
    fake, url = fake_openai
    lenient = serve(PROVIDER_ALLOWED_HOSTS="127.0.0.0/8")
    with lenient.client() as http:
        carol = user_headers(http, lenient, "carol")
        carols = project(http, carol, "carols")
        allowed_then = create(http, carol, carols, sweep({"openai": {"base_url": url}}))
    lenient.stop()

    strict = serve()  # the default hosts: the providers' own
    with strict.client() as http:
        admins = project(http, strict.admin, "ops")
        started_now = http.post(
            f"/api/experiments/{allowed_then.json()['id']}/start", headers=carol
        )
        refused_now = create(http, carol, carols, sweep({"openai": {"base_url": url}}))
        official = create(
            http, carol, carols, sweep({"openai": {"base_url": "https://api.openai.com/v1"}})
        )
        metadata = [
            create(http, headers, where, sweep({"openai": {"base_url": target}}))
            for headers, where in ((carol, carols), (strict.admin, admins))
            for target in ("http://169.254.169.254/latest", "http://metadata.google.internal/")
        ]
        by_admin = create(http, strict.admin, admins, sweep({"openai": {"base_url": url}}))
        finished = run_to_end(http, strict.admin, by_admin.json()["id"])

    assert allowed_then.status_code == 201, allowed_then.text
    assert started_now.status_code == 422
    for refused in (started_now, refused_now):
        assert refused.json()["detail"] == (
            "providers.openai.base_url: 127.0.0.1 is not a host this server lets your sweeps "
            "reach (an admin lists them in PROVIDER_ALLOWED_HOSTS)"
        )
    assert official.status_code == 201, official.text
    assert [m.status_code for m in metadata] == [422] * 4
    assert all("provider calls never go there" in m.json()["detail"] for m in metadata)
    assert finished["status"] == "completed"
    assert fake.requests == 2  # the admin's sweep only
