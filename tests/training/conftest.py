"""Training fixtures: one backend for the whole session (models load once), and a user."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.training.backend import TrainingBackend
from tests.factories import Actor, make_actor


@pytest.fixture(scope="session")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainingBackend]:
    shared = TrainingBackend(tmp_path_factory.mktemp("training-data"), "cpu")
    yield shared
    shared.shutdown()


@pytest.fixture
def trained_app(app: FastAPI, backend: TrainingBackend) -> FastAPI:
    """The app with the session's backend, so tests share loaded base models; runs never
    share state since each has its own adapter."""
    app.state.trainer.backend = backend
    return app


@pytest.fixture
async def alice(trained_app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]) -> Actor:
    return await make_actor(sessionmaker, "alice")


@pytest.fixture
async def bob(trained_app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]) -> Actor:
    return await make_actor(sessionmaker, "bob")


async def new_run(client: httpx.AsyncClient, actor: Actor, **fields: object) -> str:
    body = {"base_model": "tiny-test", **fields}
    response = await client.post("/api/training/runs", json=body, headers=actor.headers)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def on_disk(path: str) -> bool:
    return Path(path).exists()
