"""Fixtures for SDK tests: the app behind a switchable transport, and a user to call it as."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from tests.factories import Actor, make_actor


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


@pytest.fixture
async def owner(sessionmaker) -> Actor:
    return await make_actor(sessionmaker, "sdk-owner")
