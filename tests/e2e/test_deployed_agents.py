"""An agent resolved through ``promptlooper serve``: its active variant's overrides, an ETag,
and 304 until something changes."""

from __future__ import annotations

from collections.abc import Callable

from tests.deployed import Deployed


def test_an_agent_resolves_to_its_active_variant_with_an_etag(serve: Callable[..., Deployed]):
    server = serve()
    admin = server.admin

    with server.client() as http:
        project = http.post("/api/projects", json={"name": "e2e agents"}, headers=admin).json()
        agent = http.post(
            f"/api/projects/{project['id']}/agents",
            json={
                "name": "Ticket Router",
                "model_provider": "openai",
                "model_name": "gpt-4o-mini",
                "temperature": 0.2,
            },
            headers=admin,
        ).json()
        config_url = f"/api/projects/{project['id']}/agents/ticket-router/config"
        base = http.get(config_url, headers=admin)
        hot = http.post(
            f"/api/agents/{agent['id']}/variants",
            json={"name": "Hot", "temperature": 0.9},
            headers=admin,
        ).json()
        activated = http.post(
            f"/api/agents/{agent['id']}/variants/{hot['id']}/activate",
            json={"reason": "try it"},
            headers=admin,
        )
        resolved = http.get(config_url, headers=admin)
        etag = resolved.headers["ETag"]
        unchanged = http.get(config_url, headers={**admin, "If-None-Match": etag})
        http.patch(f"/api/agents/{agent['id']}", json={"model_name": "gpt-4o"}, headers=admin)
        changed = http.get(config_url, headers={**admin, "If-None-Match": etag})
        anonymous = http.get(config_url)

    assert base.status_code == 200, base.text
    assert base.json()["config"]["temperature"] == 0.2
    assert activated.status_code == 200, activated.text
    assert resolved.status_code == 200
    body = resolved.json()
    assert body["config"]["temperature"] == 0.9
    assert body["config"]["model_name"] == "gpt-4o-mini"
    assert body["provenance"]["temperature"] == "variant"
    assert body["provenance"]["model_name"] == "agent"
    assert etag == f'"{body["etag"]}"'
    assert etag != base.headers["ETag"]
    assert (unchanged.status_code, unchanged.content) == (304, b"")
    assert changed.status_code == 200
    assert changed.json()["config"]["model_name"] == "gpt-4o"
    assert changed.headers["ETag"] != etag
    assert anonymous.status_code == 401
