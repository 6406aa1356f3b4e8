"""Login, /me, API keys, admin-only users: through the real app on both databases."""

from __future__ import annotations

import uuid

import httpx
import jwt
import pytest

from promptlooper.auth import passwords
from promptlooper.auth.models import ApiKey, User
from promptlooper.auth.service import BOOTSTRAP_USERNAME
from tests.conftest import TEST_JWT_SECRET
from tests.factories import DEFAULT_PASSWORD, login, make_actor, make_user


async def test_login_returns_bearer_jwt_for_the_user(client: httpx.AsyncClient, sessionmaker):
    user = await make_user(sessionmaker, "alice")

    response = await client.post(
        "/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"])
    assert claims["sub"] == str(user.id)


@pytest.mark.parametrize(
    ("username", "password"), [("alice", "wrong password"), ("nobody", DEFAULT_PASSWORD)]
)
async def test_login_rejects_bad_credentials_alike(
    client: httpx.AsyncClient, sessionmaker, username: str, password: str
):
    await make_user(sessionmaker, "alice")

    response = await client.post(
        "/api/auth/login", json={"username": username, "password": password}
    )

    assert response.status_code == 401
    assert response.json() == {"detail": "Invalid username or password"}


async def test_login_attempts_are_rate_limited(client: httpx.AsyncClient, sessionmaker):
    await make_user(sessionmaker, "alice")
    body = {"username": "alice", "password": "wrong password"}

    statuses = [(await client.post("/api/auth/login", json=body)).status_code for _ in range(10)]
    blocked = await client.post("/api/auth/login", json=body)

    assert statuses == [401] * 10
    assert blocked.status_code == 429
    assert "Too many login attempts" in blocked.json()["detail"]
    assert int(blocked.headers["Retry-After"]) >= 1
    # Even the right password waits until the window has passed.
    right = {"username": "alice", "password": DEFAULT_PASSWORD}
    assert (await client.post("/api/auth/login", json=right)).status_code == 429


async def test_me_with_jwt(client: httpx.AsyncClient, sessionmaker):
    user = await make_user(sessionmaker, "alice")
    token = await login(client, "alice")

    response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 200
    assert response.json() == {
        "id": str(user.id),
        "username": "alice",
        "is_admin": False,
        "auth_method": "jwt",
    }


async def test_expired_or_forged_jwt_is_401(client: httpx.AsyncClient, sessionmaker):
    user = await make_user(sessionmaker, "alice")
    expired = jwt.encode(
        {"sub": str(user.id), "exp": 1, "typ": "access"}, TEST_JWT_SECRET, algorithm="HS256"
    )
    forged = jwt.encode(
        {"sub": str(user.id), "exp": 4102444800, "typ": "access"},
        "another-secret-of-enough-length-x",
        algorithm="HS256",
    )

    for token, message in ((expired, "Token has expired"), (forged, "Invalid token")):
        response = await client.get("/api/auth/me", headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 401
        assert response.json() == {"detail": message}
        assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_api_key_lifecycle(client: httpx.AsyncClient, sessionmaker):
    await make_user(sessionmaker, "alice")
    jwt_headers = {"Authorization": f"Bearer {await login(client, 'alice')}"}

    created = await client.post("/api/keys", json={"name": "laptop"}, headers=jwt_headers)
    assert created.status_code == 201
    key = created.json()
    assert set(key) == {"id", "name", "prefix", "key"}
    assert key["key"].startswith(key["prefix"])

    # The key works in both accepted headers.
    for headers in ({"X-Api-Key": key["key"]}, {"Authorization": f"Bearer {key['key']}"}):
        me = await client.get("/api/auth/me", headers=headers)
        assert me.status_code == 200
        assert me.json()["auth_method"] == "api_key"

    listed = (await client.get("/api/keys", headers=jwt_headers)).json()
    assert listed["count"] == 1
    assert listed["data"][0]["prefix"] == key["prefix"]
    assert "key" not in listed["data"][0]
    assert listed["data"][0]["last_used_at"] is not None

    revoked = await client.delete(f"/api/keys/{key['id']}", headers=jwt_headers)
    assert revoked.status_code == 204
    after = await client.get("/api/auth/me", headers={"X-Api-Key": key["key"]})
    assert after.status_code == 401
    assert (await client.get("/api/keys", headers=jwt_headers)).json()["count"] == 0
    again = await client.delete(f"/api/keys/{key['id']}", headers=jwt_headers)
    assert again.status_code == 404


async def test_api_keys_are_stored_hashed(client: httpx.AsyncClient, sessionmaker):
    actor = await make_actor(sessionmaker)
    created = (await client.post("/api/keys", json={"name": "ci"}, headers=actor.headers)).json()

    async with sessionmaker() as session:
        row = await session.get(ApiKey, uuid.UUID(created["id"]))
    assert row is not None
    assert created["key"] not in (row.key_hash, row.prefix)
    assert len(row.key_hash) == 64


async def test_passwords_are_stored_hashed(sessionmaker):
    user = await make_user(sessionmaker, "alice")
    assert user.password_hash is not None
    assert DEFAULT_PASSWORD not in user.password_hash
    assert user.password_hash.startswith("$argon2id$")


def test_the_product_hashes_passwords_with_argon2id_at_rfc_9106_cost(production_hasher):
    hashed = production_hasher().hash(DEFAULT_PASSWORD)

    assert hashed.startswith("$argon2id$v=19$m=65536,t=3,p=4$")


async def test_login_rehashes_a_password_stored_at_a_weaker_cost(
    client: httpx.AsyncClient, sessionmaker, production_hasher, monkeypatch: pytest.MonkeyPatch
):
    user = await make_user(sessionmaker, "alice")  # at the run's cheapest cost
    assert user.password_hash is not None
    assert "$m=8,t=1,p=1$" in user.password_hash
    monkeypatch.setattr(passwords, "_hasher", production_hasher)

    response = await client.post(
        "/api/auth/login", json={"username": "alice", "password": DEFAULT_PASSWORD}
    )

    assert response.status_code == 200
    async with sessionmaker() as session:
        stored = await session.get(User, user.id)
    assert stored is not None
    assert stored.password_hash is not None
    assert stored.password_hash.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert passwords.verify_password(stored.password_hash, DEFAULT_PASSWORD)


async def test_cannot_revoke_someone_elses_key(client: httpx.AsyncClient, sessionmaker):
    alice = await make_actor(sessionmaker, "alice")
    bob = await make_actor(sessionmaker, "bob")
    key = (await client.post("/api/keys", json={"name": "a"}, headers=alice.headers)).json()

    response = await client.delete(f"/api/keys/{key['id']}", headers=bob.headers)

    assert response.status_code == 404
    assert (await client.get("/api/auth/me", headers={"X-Api-Key": key["key"]})).status_code == 200


async def test_bootstrap_key_acts_as_builtin_admin(
    client: httpx.AsyncClient, bootstrap_headers, sessionmaker
):
    me = await client.get("/api/auth/me", headers=bootstrap_headers)
    assert me.status_code == 200
    assert me.json()["username"] == BOOTSTRAP_USERNAME
    assert me.json()["is_admin"] is True
    assert me.json()["auth_method"] == "bootstrap_key"

    project = await client.post("/api/projects", json={"name": "p"}, headers=bootstrap_headers)
    assert project.status_code == 201
    assert project.json()["owner_id"] == me.json()["id"]

    # The bootstrap user cannot log in with a password.
    denied = await client.post(
        "/api/auth/login", json={"username": BOOTSTRAP_USERNAME, "password": "anything-at-all"}
    )
    assert denied.status_code == 401


async def test_admin_creates_and_lists_users(client: httpx.AsyncClient, sessionmaker):
    admin = await make_actor(sessionmaker, "root", is_admin=True)

    created = await client.post(
        "/api/users",
        json={"username": "carol", "password": "long enough pw", "is_admin": False},
        headers=admin.headers,
    )
    assert created.status_code == 201
    assert created.json()["username"] == "carol"
    assert "password" not in created.text

    listed = (await client.get("/api/users", headers=admin.headers)).json()
    assert {u["username"] for u in listed["data"]} == {"root", "carol"}
    assert listed["count"] == 2
    await login(client, "carol", "long enough pw")


async def test_users_endpoints_are_admin_only(client: httpx.AsyncClient, sessionmaker):
    user = await make_actor(sessionmaker, "plain")

    listed = await client.get("/api/users", headers=user.headers)
    created = await client.post(
        "/api/users", json={"username": "x", "password": "long enough pw"}, headers=user.headers
    )

    assert listed.status_code == 403
    assert created.status_code == 403
    assert listed.json() == {"detail": "Admin rights required"}


async def test_duplicate_username_is_409(client: httpx.AsyncClient, sessionmaker):
    admin = await make_actor(sessionmaker, "root", is_admin=True)
    body = {"username": "dave", "password": "long enough pw"}

    first = await client.post("/api/users", json=body, headers=admin.headers)
    second = await client.post("/api/users", json=body, headers=admin.headers)

    assert first.status_code == 201
    assert second.status_code == 409
    assert second.json() == {"detail": "Username 'dave' is already taken"}
    async with sessionmaker() as session:
        from sqlalchemy import func, select

        assert await session.scalar(select(func.count()).where(User.username == "dave")) == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"username": "", "password": "long enough pw"}, "username"),
        ({"username": "x" * 65, "password": "long enough pw"}, "username"),
        ({"username": "has space", "password": "long enough pw"}, "username"),
        ({"username": "eve", "password": "short"}, "password"),
        ({"username": "eve", "password": "p" * 1025}, "password"),
        ({"username": "eve", "password": "long enough pw", "role": "admin"}, "role"),
        ({"username": "eve", "password": "long enough pw", "is_admin": "maybe"}, "is_admin"),
        ({"username": 42, "password": "long enough pw"}, "username"),
    ],
)
async def test_bad_user_bodies_are_422_with_the_field(
    client: httpx.AsyncClient, sessionmaker, body: dict, field: str
):
    admin = await make_actor(sessionmaker, "root", is_admin=True)

    response = await client.post("/api/users", json=body, headers=admin.headers)

    assert response.status_code == 422
    assert field in [err["loc"][-1] for err in response.json()["detail"]]
