"""Login, logout, the session cookie, CSRF and the error pages every UI page relies on."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from promptlooper.auth.models import User
from promptlooper.web.session import SESSION_COOKIE
from tests.web.conftest import PASSWORD, UiClient, csrf_in, make_user

VENDOR = Path(__file__).parents[2] / "src" / "promptlooper" / "web" / "static" / "vendor"


@pytest.fixture
async def anonymous(app: FastAPI):
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield UiClient(http)


async def test_the_root_and_every_page_send_a_visitor_to_the_login_form(anonymous: UiClient):
    root = await anonymous.get("/")
    home = await anonymous.get("/ui/")
    deep = await anonymous.get("/ui/projects/00000000-0000-0000-0000-000000000001?x=1")

    assert (root.status_code, root.headers["location"]) == (307, "/ui/")
    assert (home.status_code, home.headers["location"]) == (303, "/ui/login?next=%2Fui%2F")
    assert deep.headers["location"] == (
        "/ui/login?next=%2Fui%2Fprojects%2F00000000-0000-0000-0000-000000000001%3Fx%3D1"
    )


async def test_an_htmx_request_without_a_session_is_told_where_to_log_in(anonymous: UiClient):
    response = await anonymous.get("/ui/", headers={"HX-Request": "true"})

    assert response.status_code == 204
    assert response.headers["HX-Redirect"].startswith("/ui/login?next=")


async def test_logging_in_sets_a_signed_httponly_lax_cookie_and_returns_to_the_page(
    app: FastAPI, anonymous: UiClient
):
    await make_user(app.state.sessionmaker, "alice")
    await anonymous.get("/ui/login?next=/ui/projects")

    response = await anonymous.post(
        "/ui/login", {"username": "alice", "password": PASSWORD, "next": "/ui/projects"}
    )

    assert (response.status_code, response.headers["location"]) == (303, "/ui/projects")
    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    attributes = {part.strip().split("=")[0].lower() for part in cookie.split(";")}
    assert {"httponly", "max-age", "path", "samesite"} <= attributes
    assert "samesite=lax" in cookie.lower()
    assert "secure" not in attributes  # plain HTTP here; see the HTTPS test
    home = await anonymous.get("/ui/")
    assert home.status_code == 200
    assert "alice" in home.text


async def test_behind_https_the_session_cookie_is_secure(app: FastAPI):
    await make_user(app.state.sessionmaker, "alice")
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as http:
        client = UiClient(http)
        await client.get("/ui/login")
        response = await client.post("/ui/login", {"username": "alice", "password": PASSWORD})

    cookie = next(
        c for c in response.headers.get_list("set-cookie") if c.startswith(SESSION_COOKIE)
    )
    assert "secure" in cookie.lower().split("; ")


@pytest.mark.parametrize(
    "target", ["//evil.example/ui/", "https://evil.example/ui/", "/api/users", "/ui\\@evil", ""]
)
async def test_after_login_a_user_never_leaves_the_ui(
    app: FastAPI, anonymous: UiClient, target: str
):
    await make_user(app.state.sessionmaker, "alice")
    await anonymous.get("/ui/login")

    response = await anonymous.post(
        "/ui/login", {"username": "alice", "password": PASSWORD, "next": target}
    )

    assert response.headers["location"] == "/ui/"


async def test_a_wrong_password_is_said_on_the_form_with_the_username_kept(
    app: FastAPI, anonymous: UiClient
):
    await make_user(app.state.sessionmaker, "alice")
    await anonymous.get("/ui/login")

    response = await anonymous.post("/ui/login", {"username": "alice", "password": "nope"})

    assert response.status_code == 401
    assert "Invalid username or password" in response.text
    assert 'value="alice"' in response.text
    assert SESSION_COOKIE not in response.headers.get("set-cookie", "")


async def test_login_attempts_are_throttled(app: FastAPI, anonymous: UiClient):
    await make_user(app.state.sessionmaker, "alice")
    await anonymous.get("/ui/login")
    statuses = [
        (await anonymous.post("/ui/login", {"username": "alice", "password": "x"})).status_code
        for _ in range(11)
    ]

    assert statuses[:10] == [401] * 10
    assert statuses[10] == 429


async def test_a_login_form_posted_from_elsewhere_is_refused(app: FastAPI, anonymous: UiClient):
    await make_user(app.state.sessionmaker, "alice")
    await anonymous.get("/ui/login")

    forged = await anonymous.post(
        "/ui/login", {"username": "alice", "password": PASSWORD}, csrf="forged"
    )
    no_cookie = await httpx.AsyncClient(
        transport=anonymous.http._transport, base_url="http://testserver"
    ).post("/ui/login", data={"username": "alice", "password": PASSWORD, "csrf_token": "x"})

    assert forged.status_code == 403
    assert no_cookie.status_code == 403
    assert SESSION_COOKIE not in forged.headers.get("set-cookie", "")
    assert SESSION_COOKIE not in no_cookie.headers.get("set-cookie", "")


async def test_a_form_without_the_sessions_token_changes_nothing(ui: UiClient):
    missing = await ui.post("/ui/projects", {"name": "sneaky"}, csrf="")
    forged = await ui.post("/ui/projects", {"name": "sneaky"}, csrf="0" * 64)
    home = await ui.get("/ui/")

    assert missing.status_code == forged.status_code == 403
    assert "did not come from this site" in missing.text
    assert "sneaky" not in home.text


async def test_the_token_also_comes_as_the_htmx_header(ui: UiClient):
    response = await ui.http.post(
        "/ui/projects", data={"name": "by-htmx"}, headers={"X-CSRF-Token": ui.csrf}
    )

    assert response.status_code == 303


async def test_logging_out_ends_the_session(ui: UiClient):
    refused = await ui.post("/ui/logout", csrf="")
    still_in = await ui.get("/ui/")
    out = await ui.post("/ui/logout")

    assert refused.status_code == 403
    assert still_in.status_code == 200
    assert (out.status_code, out.headers["location"]) == (303, "/ui/login")
    assert (await ui.get("/ui/")).status_code == 303
    login = await ui.get("/ui/login")
    assert "You are logged out." in login.text


async def test_a_deactivated_users_session_ends(app: FastAPI, ui: UiClient):
    async with app.state.sessionmaker() as session:
        await session.execute(update(User).where(User.username == "alice").values(is_active=False))
        await session.commit()

    assert (await ui.get("/ui/")).status_code == 303


async def test_a_project_is_created_from_the_home_page_with_errors_beside_the_field(
    ui: UiClient,
):
    empty = await ui.post("/ui/projects", {"name": "  ", "description": "kept text"})
    created = await ui.post("/ui/projects", {"name": "triage", "description": "first"})

    assert empty.status_code == 422
    assert 'id="e-name"' in empty.text
    assert "kept text" in empty.text
    assert created.status_code == 303
    project_url = created.headers["location"]
    assert (await ui.get(project_url)).headers["location"] == project_url + "/sweeps"
    landing = await ui.get("/ui/")
    assert "Project triage created." in landing.text
    again = await ui.post("/ui/projects", {"name": "triage", "description": "kept again"})
    assert again.status_code == 422
    assert "You already have a project named" in again.text
    assert "kept again" in again.text


async def test_names_are_escaped_on_every_page(ui: UiClient):
    name = '<script>alert(1)</script>" onmouseover="alert(2)'
    await ui.get("/ui/")
    await ui.post("/ui/projects", {"name": name, "description": name})

    home = await ui.get("/ui/")

    assert "<script>alert(1)" not in home.text
    assert '" onmouseover="alert(2)' not in home.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&#34; onmouseover=&#34;alert(2)" in home.text


async def test_another_users_project_and_unknown_ids_are_the_same_404_page(
    ui: UiClient, ui_other: UiClient
):
    await ui.post("/ui/projects", {"name": "secret-plans"})
    mine = (await ui.post("/ui/projects", {"name": "mine"})).headers["location"]

    theirs = await ui_other.get(mine)
    unknown = await ui_other.get("/ui/projects/00000000-0000-0000-0000-000000000001")
    malformed = await ui_other.get("/ui/projects/not-an-id")
    home = await ui_other.get("/ui/")

    assert theirs.status_code == unknown.status_code == malformed.status_code == 404
    assert theirs.text.replace(mine, "") == unknown.text.replace(
        "/ui/projects/00000000-0000-0000-0000-000000000001", ""
    )
    assert "secret-plans" not in home.text


async def test_a_bad_query_parameter_is_a_400_page_not_a_500(ui: UiClient):
    response = await ui.get("/ui/?page=zero")

    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert "page" in response.text


async def test_pages_run_only_this_servers_scripts_and_cannot_be_framed(ui: UiClient):
    response = await ui.get("/ui/")
    policy = response.headers["content-security-policy"]

    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert response.headers["cache-control"] == "no-store"
    assert csrf_in(response.text) == ui.csrf


def test_vendored_files_match_their_recorded_versions_and_hashes():
    lines = [
        line.split()
        for line in (VENDOR / "VERSIONS").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    assert {(name, version.split(".")[0]) for name, version, *_ in lines} == {
        ("htmx.org", "2"),
        ("uplot", "1"),
    }
    for _name, _version, file, digest, licence in lines:
        assert hashlib.sha256((VENDOR / file).read_bytes()).hexdigest() == digest, file
        assert licence in {"0BSD", "MIT"}


async def test_the_layout_loads_the_vendored_htmx_served_by_the_app(ui: UiClient):
    home = await ui.get("/ui/")
    script = await ui.http.get("/static/vendor/htmx.min.js")

    assert '<script src="/static/vendor/htmx.min.js' in home.text
    assert script.status_code == 200
    assert "htmx" in script.text[:2000]


async def test_every_page_has_the_favicon_served_with_the_static_files(ui: UiClient):
    """A small SVG, from the app's own origin as the pages' policy allows (img-src 'self')."""
    login = await ui.http.get("/ui/login")
    home = await ui.get("/ui/")
    found = re.search(r'<link rel="icon" type="image/svg\+xml" href="([^"]+)">', home.text)
    assert found
    assert found[0] in login.text
    icon = await ui.http.get(found[1])

    assert icon.status_code == 200
    assert icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.text.startswith("<svg")
    assert len(icon.content) < 2048
    assert "img-src 'self'" in home.headers["content-security-policy"]
