"""What the web UI's benchmarks share: an app on a fresh SQLite database, a logged-in client
of its pages, and the timing of one page with the SQL statements it sent."""

from __future__ import annotations

import statistics
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import event
from tests.web.conftest import PASSWORD, UiClient, make_user

from promptlooper import migrations
from promptlooper.api import create_app
from promptlooper.db.engine import create_engine
from promptlooper.settings import Settings


@dataclass
class Bench:
    app: FastAPI
    ui: UiClient
    statements: list[str] = field(default_factory=list)

    async def time_page(self, path: str, repeats: int) -> tuple[float, httpx.Response, int]:
        """The median milliseconds of ``repeats`` requests after a warm-up one (templates
        compiled, caches filled), the last response, and the statements it sent."""
        warm = await self.ui.http.get(path)
        assert warm.status_code == 200, warm.text[:500]
        times = []
        for _ in range(repeats):
            self.statements.clear()
            began = time.perf_counter()
            response = await self.ui.http.get(path)
            times.append((time.perf_counter() - began) * 1000)
            assert response.status_code == 200, response.text[:500]
        return statistics.median(times), response, len(self.statements)


@asynccontextmanager
async def bench_app(folder: Path, *, admin: bool = False) -> AsyncIterator[Bench]:
    """The app over a migrated SQLite file in ``folder``, with user ``bench`` logged in."""
    url = f"sqlite+aiosqlite:///{folder / 'ui.db'}"
    engine = create_engine(url)
    await migrations.upgrade(engine)
    await engine.dispose()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        database_url=url,
        data_dir=folder / "data",
        redis_url="",
        jwt_secret="ui-benchmark-secret-of-enough-bytes-for-hs256",
        log_level="warning",
    )
    app = create_app(settings)
    await make_user(app.state.sessionmaker, "bench", admin=admin)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
        ui = UiClient(http)
        await ui.login("bench", PASSWORD)
        bench = Bench(app, ui)
        event.listen(
            app.state.engine.sync_engine,
            "before_cursor_execute",
            lambda conn, cursor, statement, *args: bench.statements.append(statement),
        )
        try:
            yield bench
        finally:
            await app.state.event_bus.close()
            await app.state.engine.dispose()
