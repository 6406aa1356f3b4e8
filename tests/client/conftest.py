"""Fixtures for SDK tests: the app behind a switchable transport, and a live server."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from promptlooper.api.app import create_app
from promptlooper.settings import Settings


class Switch(httpx.AsyncBaseTransport):
    """The app over ASGI, with a switch that makes it unreachable and a log of statuses."""

    def __init__(self, app: FastAPI) -> None:
        self.inner = httpx.ASGITransport(app=app, client=("127.0.0.1", 50000))
        self.down = False
        self.fail_with: int | None = None
        self.statuses: list[int] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            raise httpx.ConnectError("connection refused", request=request)
        if self.fail_with is not None:
            self.statuses.append(self.fail_with)
            return httpx.Response(self.fail_with, json={"detail": "boom"})
        response = await self.inner.handle_async_request(request)
        self.statuses.append(response.status_code)
        return response


@pytest.fixture
def switch(app: FastAPI) -> Switch:
    return Switch(app)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def live_url(settings: Settings) -> Iterator[str]:
    """A real uvicorn server on 127.0.0.1 in a thread, on the test's database."""
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    for _ in range(500):
        if server.started:
            break
        threading.Event().wait(0.01)
    else:
        raise RuntimeError("the test server did not start")
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
