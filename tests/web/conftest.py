"""Fixtures for the web UI: logged-in page clients (``UiClient``) and a headless Chromium.

HTTP-level tests talk to the app in process through ``UiClient``, which logs in through the
login form as a browser does and sends each form with the CSRF token of the page it came
from. Browser tests drive Debian's Chromium against ``promptlooper serve`` as deployed.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth import service as auth
from tests.conftest import service_unavailable

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Headless Chromium announces itself as HeadlessChrome, which the A/B bot filter rightly
# refuses; the tests browse as the desktop browser it is.
USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36"
)
PASSWORD = "correct horse battery"
_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_in(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _TOKEN.search(html)
    assert found, "the page has no form with a CSRF token"
    return found[1]


class UiClient:
    """A browser-like client of the pages: cookies kept, redirects not followed."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        self.csrf = ""

    async def get(self, url: str, **kwargs: Any) -> httpx.Response:
        response = await self.http.get(url, **kwargs)
        if found := _TOKEN.search(response.text):
            self.csrf = found[1]
        return response

    async def post(
        self, url: str, data: Mapping[str, Any] | None = None, *, csrf: str | None = None, **kw: Any
    ) -> httpx.Response:
        """Submit a form with the token of the last page seen (or ``csrf``, "" for none)."""
        token = self.csrf if csrf is None else csrf
        fields = {**(data or {})}
        if token:
            fields["csrf_token"] = token
        return await self.http.post(url, data=fields, **kw)

    async def login(self, username: str, password: str = PASSWORD) -> httpx.Response:
        await self.get("/ui/login")
        response = await self.post("/ui/login", {"username": username, "password": password})
        assert response.status_code == 303, response.text
        await self.get("/ui/")
        return response


async def make_user(
    sessionmaker: async_sessionmaker[AsyncSession], username: str, *, admin: bool = False
) -> None:
    async with sessionmaker() as session:
        await auth.create_user(session, username, PASSWORD, is_admin=admin)
        await session.commit()


async def _ui_client(app: FastAPI, username: str, admin: bool) -> UiClient:
    await make_user(app.state.sessionmaker, username, admin=admin)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    http = httpx.AsyncClient(transport=transport, base_url="http://testserver")
    ui = UiClient(http)
    await ui.login(username)
    return ui


@pytest.fixture
async def ui(app: FastAPI) -> AsyncIterator[UiClient]:
    """Logged in as ``alice``, a user without admin rights."""
    client = await _ui_client(app, "alice", admin=False)
    yield client
    await client.http.aclose()


@pytest.fixture
async def ui_other(app: FastAPI) -> AsyncIterator[UiClient]:
    """Logged in as ``mallory``, a second user without admin rights."""
    client = await _ui_client(app, "mallory", admin=False)
    yield client
    await client.http.aclose()


@pytest.fixture
async def ui_admin(app: FastAPI) -> AsyncIterator[UiClient]:
    client = await _ui_client(app, "root-admin", admin=True)
    yield client
    await client.http.aclose()


@pytest.fixture
def browser() -> Iterator[Any]:
    """Headless Chromium through chromedriver (Debian's packages; ``make test`` installs them)."""
    if not CHROMIUM.exists() or not CHROMEDRIVER.exists() or shutil.which("chromium") is None:
        service_unavailable("Chromium", FileNotFoundError(str(CHROMIUM)))
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument(f"--user-agent={USER_AGENT}")
    options.add_argument("--window-size=1280,900")
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@contextmanager
def statements(app: FastAPI) -> Iterator[list[str]]:
    """The SQL statements the app sends while the block runs."""
    seen: list[str] = []

    def count(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        seen.append(statement)

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", count)
