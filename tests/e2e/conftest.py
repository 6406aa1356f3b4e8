"""Fixtures for end-to-end tests of the product as deployed (see ``tests/deployed.py``).

``serve(**env)`` starts ``promptlooper serve`` on a fresh database of each backend (every test
here runs on SQLite and on PostgreSQL); fake providers serve from threads on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import BACKENDS, drop_database, fresh_database
from tests.deployed import Deployed, ThreadedApp, start_server
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI


@pytest.fixture(params=BACKENDS)
def deployed_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A new, empty database (no schema: the server migrates it, as ``serve`` does)."""
    url = asyncio.run(fresh_database(request.param, tmp_path))
    yield url.replace("+aiosqlite", "").replace("+asyncpg", "")
    asyncio.run(drop_database(url))


@pytest.fixture
def serve(deployed_db: str, tmp_path: Path) -> Iterator[Callable[..., Deployed]]:
    """Start servers on the test's database: ``serve(OPENAI_API_KEY="...")``; each is stopped
    at the end of the test, and its log is printed if the test failed."""
    started: list[Deployed] = []

    def start(_args: tuple[str, ...] = (), **env: str) -> Deployed:
        deployed = start_server(deployed_db, tmp_path / f"server{len(started)}", env, args=_args)
        started.append(deployed)
        return deployed

    yield start
    for deployed in started:
        deployed.stop()
        print(f"--- log of {deployed.url} ---\n{deployed.log()}")


@pytest.fixture
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    """An OpenAI-compatible fake and its base URL (``http://127.0.0.1:PORT/v1``)."""
    fake = FakeOpenAI()
    with ThreadedApp(fake.app()) as served:
        yield fake, f"{served.origin}/v1"


@pytest.fixture
def fake_anthropic() -> Iterator[tuple[FakeAnthropic, str]]:
    """An Anthropic Messages fake and its base URL (``http://127.0.0.1:PORT/v1``)."""
    fake = FakeAnthropic()
    with ThreadedApp(fake.app()) as served:
        yield fake, f"{served.origin}/v1"
