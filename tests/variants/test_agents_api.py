"""Agents and variants through the HTTP API on both databases."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.factories import make_actor
from tests.variants.conftest import BASE, make_agent, make_variant


def url(agent: dict, *parts: str) -> str:
    return "/".join([f"/api/agents/{agent['id']}", *parts]).rstrip("/")


async def test_create_agent_with_slug_and_full_config(agent: dict):
    assert agent["slug"] == "extractor"
    assert agent["config"]["model_name"] == "gpt-4o-mini"
    assert agent["config"]["token_budget"] is None
    assert agent["revision"] == 1
    assert agent["active_variant_id"] is None


async def test_variants_override_only_what_they_set_and_follow_later_agent_edits(
    client: httpx.AsyncClient, owner, agent
):
    created = await client.post(
        url(agent, "variants"), json={"name": "Hot", "temperature": 0.9}, headers=owner.headers
    )
    assert created.status_code == 201
    variant = created.json()
    assert variant["overrides"] == {"temperature": 0.9}
    assert variant["config"]["temperature"] == 0.9
    assert variant["config"]["model_name"] == "gpt-4o-mini"

    await client.patch(url(agent), json={"model_name": "gpt-4o"}, headers=owner.headers)
    after = (await client.get(url(agent, "variants", variant["id"]), headers=owner.headers)).json()

    assert after["config"]["model_name"] == "gpt-4o"  # inherited, so it follows the agent
    assert after["config"]["temperature"] == 0.9


async def test_clone_from_agent_and_from_variant(client: httpx.AsyncClient, owner, agent):
    source = (
        await client.post(
            url(agent, "variants"),
            json={"name": "Careful", "temperature": 0.0, "system_prompt": "Be careful."},
            headers=owner.headers,
        )
    ).json()

    from_variant = await client.post(
        url(agent, "variants", source["id"], "clone"),
        json={"name": "Careful long", "max_tokens": 2048},
        headers=owner.headers,
    )
    from_agent = await client.post(
        url(agent, "clone"), json={"name": "Fresh"}, headers=owner.headers
    )

    clone = from_variant.json()
    assert from_variant.status_code == 201
    assert clone["overrides"] == {
        "temperature": 0.0,
        "system_prompt": "Be careful.",
        "max_tokens": 2048,
    }
    assert clone["origin"] == {"cloned_from": source["id"]}
    assert from_agent.json()["overrides"] == {}
    assert from_agent.json()["config"] == agent["config"]


async def test_activation_resolution_etag_and_events(
    client: httpx.AsyncClient, owner, agent, project_id
):
    a = (
        await client.post(
            url(agent, "variants"), json={"name": "A", "temperature": 1.0}, headers=owner.headers
        )
    ).json()
    b = (
        await client.post(
            url(agent, "variants"), json={"name": "B", "max_tokens": 64}, headers=owner.headers
        )
    ).json()

    base = (await client.get(url(agent, "config"), headers=owner.headers)).json()
    assert base["source"] == "agent"
    assert base["variant_id"] is None
    assert base["config"] == agent["config"]

    await client.post(
        url(agent, "variants", a["id"], "activate"), json={"reason": "try A"}, headers=owner.headers
    )
    await client.post(url(agent, "variants", b["id"], "activate"), headers=owner.headers)
    resolved = await client.get(url(agent, "config"), headers=owner.headers)
    by_slug = await client.get(
        f"/api/projects/{project_id}/agents/extractor/config", headers=owner.headers
    )

    body = resolved.json()
    assert body["source"] == "variant"
    assert body["variant_id"] == b["id"]
    assert body["config"]["max_tokens"] == 64
    assert body["config"]["temperature"] == 0.2
    assert body["provenance"]["max_tokens"] == "variant"
    assert body["provenance"]["temperature"] == "agent"
    assert body["revision"] == "1.1"
    assert by_slug.json() == body
    assert resolved.headers["etag"] == f'"{body["etag"]}"'

    not_modified = await client.get(
        url(agent, "config"), headers={**owner.headers, "If-None-Match": f'"{body["etag"]}"'}
    )
    assert not_modified.status_code == 304
    await client.patch(
        url(agent, "variants", b["id"]), json={"max_tokens": 128}, headers=owner.headers
    )
    modified = await client.get(
        url(agent, "config"), headers={**owner.headers, "If-None-Match": f'"{body["etag"]}"'}
    )
    assert modified.status_code == 200
    assert modified.json()["revision"] == "1.2"

    variants = (await client.get(url(agent, "variants"), headers=owner.headers)).json()["data"]
    assert [v["is_active"] for v in variants] == [False, True]
    assert (await client.get(url(agent), headers=owner.headers)).json()["active_variant_id"] == b[
        "id"
    ]

    await client.post(url(agent, "deactivate"), json={"reason": "rollback"}, headers=owner.headers)
    events = (await client.get(url(agent, "activations"), headers=owner.headers)).json()["data"]
    assert [(e["from_variant_id"], e["to_variant_id"]) for e in events] == [
        (None, a["id"]),
        (a["id"], b["id"]),
        (b["id"], None),
    ]
    assert events[0]["reason"] == "try A"
    assert events[2]["reason"] == "rollback"
    assert (await client.get(url(agent, "config"), headers=owner.headers)).json()[
        "source"
    ] == "agent"


async def test_deleting_the_active_variant_deactivates_it_first(
    client: httpx.AsyncClient, owner, agent
):
    v = (
        await client.post(url(agent, "variants"), json={"name": "A"}, headers=owner.headers)
    ).json()
    await client.post(url(agent, "variants", v["id"], "activate"), headers=owner.headers)

    deleted = await client.delete(url(agent, "variants", v["id"]), headers=owner.headers)
    events = (await client.get(url(agent, "activations"), headers=owner.headers)).json()["data"]

    assert deleted.status_code == 204
    assert (await client.get(url(agent, "config"), headers=owner.headers)).json()[
        "source"
    ] == "agent"
    assert events[-1]["to_variant_id"] is None
    assert "deleted" in events[-1]["reason"]


async def test_partial_updates_are_idempotent_and_only_real_changes_make_revisions(
    client: httpx.AsyncClient, owner, agent
):
    v = (
        await client.post(
            url(agent, "variants"), json={"name": "A", "temperature": 0.5}, headers=owner.headers
        )
    ).json()

    first = (
        await client.patch(
            url(agent, "variants", v["id"]), json={"temperature": 0.7}, headers=owner.headers
        )
    ).json()
    second = (
        await client.patch(
            url(agent, "variants", v["id"]), json={"temperature": 0.7}, headers=owner.headers
        )
    ).json()
    same_agent = (
        await client.patch(url(agent), json={"temperature": 0.2}, headers=owner.headers)
    ).json()
    inherit = (
        await client.patch(
            url(agent, "variants", v["id"]),
            json={"inherit": ["temperature"]},
            headers=owner.headers,
        )
    ).json()
    revisions = (await client.get(url(agent, "revisions"), headers=owner.headers)).json()["data"]

    assert first["revision"] == second["revision"] == 2
    assert {k: second[k] for k in ("overrides", "config")} == {
        k: first[k] for k in ("overrides", "config")
    }
    assert same_agent["revision"] == 1
    assert inherit["overrides"] == {}
    assert inherit["config"]["temperature"] == 0.2
    variant_revisions = [r for r in revisions if r["variant_id"] == v["id"]]
    assert [r["number"] for r in variant_revisions] == [1, 2, 3]
    assert variant_revisions[-1]["changed_fields"] == ["temperature"]
    assert len([r for r in revisions if r["variant_id"] is None]) == 1


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"name": "X", "temperature": 3}, "temperature"),
        ({"name": "X", "max_tokens": 0}, "max_tokens"),
        ({"name": "X", "colour": "red"}, "colour"),
        ({"name": "X", "slug": "Not A Slug"}, "slug"),
        ({"name": "", "temperature": 1}, "name"),
        ({"name": "X", "model_name": None}, "model_name"),
    ],
)
async def test_bad_variant_bodies_are_422(client: httpx.AsyncClient, owner, agent, body, where):
    response = await client.post(url(agent, "variants"), json=body, headers=owner.headers)
    assert response.status_code == 422, response.text
    assert where in str(response.json()["detail"])


async def test_duplicates_cross_agent_moves_and_missing_things(
    client: httpx.AsyncClient, owner, agent, project_id, sessionmaker
):
    other = await make_agent(client, owner, project_id, "Other")
    mine = await make_variant(client, owner, agent, name="A")

    responses = {
        "dup agent name": await client.post(
            f"/api/projects/{project_id}/agents",
            json={"name": "Extractor", **BASE},
            headers=owner.headers,
        ),
        "dup agent slug": await client.post(
            f"/api/projects/{project_id}/agents",
            json={"name": "New", "slug": "extractor", **BASE},
            headers=owner.headers,
        ),
        "dup variant name": await client.post(
            url(agent, "variants"), json={"name": "A"}, headers=owner.headers
        ),
        "activate other's": await client.post(
            url(other, "variants", mine["id"], "activate"), headers=owner.headers
        ),
        "clone across agents": await client.post(
            url(other, "variants", mine["id"], "clone"), json={"name": "Z"}, headers=owner.headers
        ),
        "missing agent": await client.get(
            f"/api/agents/{uuid.uuid4()}/config", headers=owner.headers
        ),
        "missing slug": await client.get(
            f"/api/projects/{project_id}/agents/nope/config", headers=owner.headers
        ),
        "agent without model": await client.post(
            f"/api/projects/{project_id}/agents",
            json={"name": "Q", "model_provider": "x"},
            headers=owner.headers,
        ),
        "set and inherit": await client.patch(
            url(agent, "variants", mine["id"]),
            json={"temperature": 1, "inherit": ["temperature"]},
            headers=owner.headers,
        ),
    }
    codes = {name: r.status_code for name, r in responses.items()}

    assert codes == {
        "dup agent name": 409,
        "dup agent slug": 409,
        "dup variant name": 409,
        "activate other's": 404,
        "clone across agents": 404,
        "missing agent": 404,
        "missing slug": 404,
        "agent without model": 422,
        "set and inherit": 422,
    }
    assert responses["activate other's"].json() == {"detail": "Variant not found for this agent"}
    missing = {"detail": "No agent with slug 'nope' in this project"}
    assert responses["missing slug"].json() == missing
    capitalised = await client.get(
        f"/api/projects/{project_id}/agents/Extractor/config", headers=owner.headers
    )
    assert capitalised.status_code == 404
    assert capitalised.json() == {
        "detail": "No agent with slug 'Extractor' in this project; slugs are lowercase: "
        "did you mean 'extractor'?"
    }
    # A hint only for an agent that exists.
    unknown = await client.get(
        f"/api/projects/{project_id}/agents/Nope/config", headers=owner.headers
    )
    assert unknown.json() == {"detail": "No agent with slug 'Nope' in this project"}
    intruder = await make_actor(sessionmaker, "intruder")
    assert (await client.get(url(agent, "config"), headers=intruder.headers)).status_code == 403


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("max_tokens", 1e30),
        ("max_tokens", 1e15),
        ("max_tokens", 2**31),
        ("context_window", 2**63),
        ("input_token_limit", 10**12),
        ("token_budget", 2**63),
        ("max_retries", 10**6),
        ("timeout_seconds", 1e30),
    ],
)
async def test_out_of_range_numbers_are_refused_naming_the_field(
    client: httpx.AsyncClient, owner, project_id, agent, field, value
):
    created = await client.post(
        f"/api/projects/{project_id}/agents",
        json={"name": "Huge", **BASE, field: value},
        headers=owner.headers,
    )
    patched = await client.patch(url(agent), json={field: value}, headers=owner.headers)
    varied = await client.post(
        url(agent, "variants"), json={"name": "Huge", field: value}, headers=owner.headers
    )

    for response in (created, patched, varied):
        assert response.status_code == 422, response.text
        assert field in str(response.json()["detail"])


async def test_token_counts_at_their_bounds_read_back_as_integers(
    client: httpx.AsyncClient, owner, agent
):
    bounds = {"max_tokens": 1_000_000, "context_window": 100_000_000}

    patched = await client.patch(url(agent), json=bounds, headers=owner.headers)
    read = (await client.get(url(agent), headers=owner.headers)).json()

    assert patched.status_code == 200, patched.text
    assert {k: read["config"][k] for k in bounds} == bounds
    assert all(type(read["config"][k]) is int for k in bounds)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("model_provider", "opneai", "unknown provider 'opneai'; known: anthropic, local, mock"),
        ("user_prompt_template", "{{ input ", "template syntax error on line 1"),
        ("system_prompt", "Be {% if brief %}brief.", "template syntax error"),
    ],
)
async def test_unknown_providers_and_broken_templates_are_refused(
    client: httpx.AsyncClient, owner, project_id, agent, field, value, message
):
    created = await client.post(
        f"/api/projects/{project_id}/agents",
        json={"name": "Broken", **BASE, field: value},
        headers=owner.headers,
    )
    patched = await client.patch(url(agent), json={field: value}, headers=owner.headers)
    varied = await client.post(
        url(agent, "variants"), json={"name": "Broken", field: value}, headers=owner.headers
    )

    for response in (created, patched, varied):
        assert response.status_code == 422, response.text
        (problem,) = response.json()["detail"]
        assert problem["loc"] == ["body", field]
        assert message in problem["msg"]
    unchanged = (await client.get(url(agent), headers=owner.headers)).json()
    assert unchanged["config"] == agent["config"]


async def test_non_latin_names_get_transliterated_slugs(
    client: httpx.AsyncClient, owner, project_id, agent
):
    created = await client.post(
        f"/api/projects/{project_id}/agents",
        json={"name": "Классификатор", **BASE},
        headers=owner.headers,
    )
    variant = await client.post(
        url(agent, "variants"), json={"name": "日本語"}, headers=owner.headers
    )

    assert created.status_code == 201, created.text
    assert created.json()["slug"] == "klassifikator"
    assert variant.json()["slug"] == "ri-ben-yu"


@pytest.mark.parametrize(
    ("header", "status"),
    [
        ('"{etag}"', 304),
        ('W/"{etag}"', 304),
        ('"stale", W/"{etag}"', 304),
        ("*", 304),
        ('"stale"', 200),
        ('W/"stale"', 200),
    ],
)
async def test_if_none_match_uses_weak_comparison(
    client: httpx.AsyncClient, owner, agent, header, status
):
    """RFC 9110 §13.1.2: a weak tag matches its strong twin (a proxy that compresses the
    answer weakens its ETag), and ``*`` matches any current config."""
    etag = (await client.get(url(agent, "config"), headers=owner.headers)).json()["etag"]

    response = await client.get(
        url(agent, "config"),
        headers={**owner.headers, "If-None-Match": header.format(etag=etag)},
    )

    assert response.status_code == status
    assert response.headers["ETag"] == f'"{etag}"'


async def test_long_names_that_share_a_slug_prefix_get_slugs_that_fit(
    client: httpx.AsyncClient, owner, project_id
):
    """Slugs are at most 100 characters; the counter that tells two apart must fit too."""
    answers = [
        await client.post(
            f"/api/projects/{project_id}/agents",
            json={"name": "x" * 120 + suffix, **BASE},
            headers=owner.headers,
        )
        for suffix in ("a", "b")
    ]

    assert [a.status_code for a in answers] == [201, 201], answers[-1].text
    slugs = [a.json()["slug"] for a in answers]
    assert slugs == ["x" * 100, "x" * 98 + "-2"]
