"""Helpers that arrange state through the real services and API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth import service as auth_service
from promptlooper.auth.models import User

DEFAULT_PASSWORD = "correct horse battery"


@dataclass(frozen=True)
class Actor:
    """A user and the headers that authenticate as them."""

    user: User
    headers: dict[str, str]

    @property
    def id(self) -> uuid.UUID:
        return self.user.id


async def make_user(
    sessionmaker: async_sessionmaker[AsyncSession],
    username: str | None = None,
    *,
    password: str = DEFAULT_PASSWORD,
    is_admin: bool = False,
) -> User:
    async with sessionmaker() as session:
        user = await auth_service.create_user(
            session, username or f"user-{uuid.uuid4().hex[:8]}", password, is_admin=is_admin
        )
        await session.commit()
        return user


async def make_actor(
    sessionmaker: async_sessionmaker[AsyncSession],
    username: str | None = None,
    *,
    is_admin: bool = False,
) -> Actor:
    """A user authenticated by a fresh API key of theirs."""
    user = await make_user(sessionmaker, username, is_admin=is_admin)
    async with sessionmaker() as session:
        _, raw = await auth_service.create_api_key(session, user.id, "test")
        await session.commit()
    return Actor(user=user, headers={"X-Api-Key": raw})


async def login(client: httpx.AsyncClient, username: str, password: str = DEFAULT_PASSWORD) -> str:
    response = await client.post(
        "/api/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
