"""A name holding NUL is refused the same way on SQLite (which would store it) and PostgreSQL
(which cannot): 422 naming the field, and nothing written."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import make_actor

NUL = "bad\x00name"


@pytest.mark.parametrize(
    ("what", "loc"),
    [
        ("project", ["body", "name"]),
        ("renamed project", ["body", "name"]),
        ("experiment", ["body", "name"]),
        ("agent", ["body", "name"]),
        ("variant", ["body", "name"]),
        ("online experiment", ["body", "name"]),
        ("online variant", ["body", "variants", 1, "label"]),
        ("api key", ["body", "name"]),
    ],
)
async def test_a_name_holding_nul_is_422_naming_it_on_both_databases(
    client: httpx.AsyncClient, sessionmaker, bootstrap_headers: dict[str, str], what: str, loc: list
):
    owner = await make_actor(sessionmaker, "owner")
    headers = owner.headers
    project = (await client.post("/api/projects", json={"name": "p"}, headers=headers)).json()
    agent = (
        await client.post(
            f"/api/projects/{project['id']}/agents",
            json={"name": "Router", "model_provider": "openai", "model_name": "m"},
            headers=headers,
        )
    ).json()
    online = {
        "experiment_key": "checkout",
        "name": "Checkout",
        "cookie_name": "exp_checkout",
        "variants": [
            {"variant_key": "control", "allocation": 50, "is_control": True},
            {"variant_key": "green", "allocation": 50, "label": "Green"},
        ],
    }
    sweep = {
        "name": NUL,
        "parameter_space": {"model": ["mock:a"], "prompt": ["Hi"]},
        "dataset": {"rows": [{"input": "x"}]},
    }
    online_variants = [online["variants"][0], {**online["variants"][1], "label": NUL}]
    requests = {
        "project": ("POST", "/api/projects", {"name": NUL}, headers),
        "renamed project": ("PATCH", f"/api/projects/{project['id']}", {"name": NUL}, headers),
        "experiment": ("POST", f"/api/projects/{project['id']}/experiments", sweep, headers),
        "agent": (
            "POST",
            f"/api/projects/{project['id']}/agents",
            {"name": NUL, "model_provider": "openai", "model_name": "m"},
            headers,
        ),
        "variant": ("POST", f"/api/agents/{agent['id']}/variants", {"name": NUL}, headers),
        "online experiment": (
            "POST",
            "/api/admin/experiments",
            {**online, "name": NUL},
            bootstrap_headers,
        ),
        "online variant": (
            "POST",
            "/api/admin/experiments",
            {**online, "variants": online_variants},
            bootstrap_headers,
        ),
        "api key": ("POST", "/api/keys", {"name": NUL}, headers),
    }
    method, url, body, as_who = requests[what]

    response = await client.request(method, url, json=body, headers=as_who)

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc
    assert problem["msg"] == "Text must not contain the NUL character (\\u0000)"
    projects = (await client.get("/api/projects", headers=headers)).json()["data"]
    assert [p["name"] for p in projects] == ["p"]
