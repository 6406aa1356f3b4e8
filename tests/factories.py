"""Helpers that arrange state through the real services and API."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

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


# A guardrail on metric ``cost-per-call``: the server's upkeep stops an arm whose cost per
# call is past 20 % over the control's.
COST_GUARD: dict[str, Any] = {
    "guardrail_metrics": ["cost-per-call"],
    "guardrail_thresholds": {"cost-per-call": {"threshold": 0.2}},
    "auto_stop": True,
}


def even_arms(treatment: str, **arm: Any) -> list[dict[str, Any]]:
    """An online experiment's arms: the control and ``treatment``, half the traffic each;
    ``arm`` adds to the treatment's arm (``agent_variant_id``, ``label``...)."""
    return [
        {"variant_key": "control", "allocation": 50, "is_control": True},
        {"variant_key": treatment, "allocation": 50, **arm},
    ]


def online_experiment(
    key: str, treatment: str, *, arm: dict[str, Any] | None = None, **fields: Any
) -> dict[str, Any]:
    """The definition of online experiment ``key``, the control against ``treatment`` on even
    traffic (``even_arms``, with ``arm`` added to the treatment's); ``fields`` add to it or
    replace its name, cookie or arms."""
    return {
        "experiment_key": key,
        "name": key.replace("_", " ").capitalize(),
        "cookie_name": f"exp_{key}",
        "variants": even_arms(treatment, **(arm or {})),
    } | fields


async def create_online_experiment(
    client: httpx.AsyncClient, headers: dict[str, str], definition: dict[str, Any]
) -> dict[str, Any]:
    """Register an online experiment through the admin API, as an admin does."""
    response = await client.post("/api/admin/experiments", json=definition, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()
