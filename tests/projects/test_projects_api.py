"""Projects CRUD with owner-only access, on both databases."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.factories import make_actor


async def test_project_crud_round_trip(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")

    created = await client.post(
        "/api/projects", json={"name": "triage", "description": "tickets"}, headers=alice.headers
    )
    assert created.status_code == 201
    project = created.json()
    assert project["owner_id"] == str(alice.id)
    assert project["description"] == "tickets"

    got = await client.get(f"/api/projects/{project['id']}", headers=alice.headers)
    assert got.json() == project

    patched = await client.patch(
        f"/api/projects/{project['id']}",
        json={"description": "support tickets"},
        headers=alice.headers,
    )
    assert patched.status_code == 200
    assert patched.json()["name"] == "triage"  # not sent, not changed
    assert patched.json()["description"] == "support tickets"

    deleted = await client.delete(f"/api/projects/{project['id']}", headers=alice.headers)
    assert deleted.status_code == 204
    missing = await client.get(f"/api/projects/{project['id']}", headers=alice.headers)
    assert missing.status_code == 404
    assert missing.json() == {"detail": "Project not found"}


async def test_list_shows_own_projects_and_admins_see_all(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")
    bob = await make_actor(sessionmaker, "bob")
    admin = await make_actor(sessionmaker, "root", is_admin=True)
    for name in ("a1", "a2"):
        await client.post("/api/projects", json={"name": name}, headers=alice.headers)
    await client.post("/api/projects", json={"name": "b1"}, headers=bob.headers)

    mine = (await client.get("/api/projects", headers=alice.headers)).json()
    everything = (await client.get("/api/projects", headers=admin.headers)).json()
    page = (await client.get("/api/projects?limit=1&offset=1", headers=admin.headers)).json()

    assert {p["name"] for p in mine["data"]} == {"a1", "a2"}
    assert mine["count"] == 2
    assert {p["name"] for p in everything["data"]} == {"a1", "a2", "b1"}
    assert len(page["data"]) == 1
    assert page["count"] == 3


async def test_other_users_project_is_403_for_every_verb(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")
    bob = await make_actor(sessionmaker, "bob")
    project = (
        await client.post("/api/projects", json={"name": "secret"}, headers=alice.headers)
    ).json()
    url = f"/api/projects/{project['id']}"

    responses = [
        await client.get(url, headers=bob.headers),
        await client.patch(url, json={"name": "mine now"}, headers=bob.headers),
        await client.delete(url, headers=bob.headers),
    ]

    assert [r.status_code for r in responses] == [403, 403, 403]
    assert responses[0].json() == {"detail": "You do not have access to this project"}
    unchanged = (await client.get(url, headers=alice.headers)).json()
    assert unchanged["name"] == "secret"


async def test_admin_can_manage_any_project(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")
    admin = await make_actor(sessionmaker, "root", is_admin=True)
    project = (await client.post("/api/projects", json={"name": "p"}, headers=alice.headers)).json()

    patched = await client.patch(
        f"/api/projects/{project['id']}", json={"description": "by admin"}, headers=admin.headers
    )

    assert patched.status_code == 200
    assert patched.json()["owner_id"] == str(alice.id)


async def test_duplicate_name_per_owner_is_409_but_other_owners_may_reuse_it(
    client: httpx.AsyncClient, sessionmaker
):
    alice = await make_actor(sessionmaker, "alice")
    bob = await make_actor(sessionmaker, "bob")
    await client.post("/api/projects", json={"name": "shared"}, headers=alice.headers)
    other = (
        await client.post("/api/projects", json={"name": "other"}, headers=alice.headers)
    ).json()

    again = await client.post("/api/projects", json={"name": "shared"}, headers=alice.headers)
    rename = await client.patch(
        f"/api/projects/{other['id']}", json={"name": "shared"}, headers=alice.headers
    )
    bobs = await client.post("/api/projects", json={"name": "shared"}, headers=bob.headers)

    assert again.status_code == 409
    assert again.json() == {"detail": "You already have a project named 'shared'"}
    assert rename.status_code == 409
    assert bobs.status_code == 201


async def test_patch_that_changes_nothing_keeps_updated_at(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")
    project = (await client.post("/api/projects", json={"name": "p"}, headers=alice.headers)).json()

    same = await client.patch(
        f"/api/projects/{project['id']}", json={"name": "p"}, headers=alice.headers
    )

    assert same.status_code == 200
    assert same.json()["updated_at"] == project["updated_at"]


@pytest.mark.parametrize(
    ("method", "body", "field"),
    [
        ("post", {"name": ""}, "name"),
        ("post", {"name": "n" * 201}, "name"),
        ("post", {"name": "ok", "description": "d" * 5001}, "description"),
        ("post", {"name": ["not", "a", "string"]}, "name"),
        ("post", {"name": "ok", "owner_id": str(uuid.uuid4())}, "owner_id"),
        ("post", {}, "name"),
        ("patch", {"colour": "blue"}, "colour"),
        ("patch", {"name": None}, "name"),
    ],
)
async def test_bad_project_bodies_are_422(
    client: httpx.AsyncClient, sessionmaker, method: str, body: dict, field: str
):
    alice = await make_actor(sessionmaker, "alice")
    project = (await client.post("/api/projects", json={"name": "p"}, headers=alice.headers)).json()
    url = "/api/projects" if method == "post" else f"/api/projects/{project['id']}"

    response = await client.request(method.upper(), url, json=body, headers=alice.headers)

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    if isinstance(detail, list):
        assert field in [err["loc"][-1] for err in detail]
    else:
        assert field in detail
    listed = (await client.get("/api/projects", headers=alice.headers)).json()
    assert [p["name"] for p in listed["data"]] == ["p"]


async def test_malformed_json_and_bad_ids_are_4xx(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")
    headers = {**alice.headers, "Content-Type": "application/json"}

    malformed = await client.post("/api/projects", content=b'{"name": ', headers=headers)
    not_object = await client.post("/api/projects", content=b'["x"]', headers=headers)
    bad_id = await client.get("/api/projects/not-a-uuid", headers=alice.headers)
    bad_limit = await client.get("/api/projects?limit=0", headers=alice.headers)

    assert malformed.status_code == 422
    assert malformed.json()["detail"][0]["type"] == "json_invalid"
    assert not_object.status_code == 422
    assert bad_id.status_code == 422
    assert bad_id.json()["detail"][0]["loc"] == ["path", "project_id"]
    assert bad_limit.status_code == 422


@pytest.mark.parametrize("path", ["/api/projects", "/api/training/runs"])
async def test_an_offset_past_64_bits_is_422(client: httpx.AsyncClient, sessionmaker, path):
    """The database drivers fail on an OFFSET past a signed 64-bit integer."""
    alice = await make_actor(sessionmaker, "alice")

    last = await client.get(path, params={"offset": 2**63 - 1}, headers=alice.headers)
    past = await client.get(path, params={"offset": 2**63}, headers=alice.headers)

    assert last.status_code == 200
    assert last.json()["data"] == []
    assert past.status_code == 422
    assert past.json()["detail"][0]["loc"] == ["query", "offset"]


async def test_text_postgresql_cannot_store_is_422_naming_the_field_on_both_databases(
    client: httpx.AsyncClient, sessionmaker
):
    alice = await make_actor(sessionmaker, "alice")

    response = await client.post("/api/projects", json={"name": "a\x00b"}, headers=alice.headers)

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "name"]
    assert "NUL" in problem["msg"]
    listed = (await client.get("/api/projects", headers=alice.headers)).json()
    assert listed["count"] == 0
