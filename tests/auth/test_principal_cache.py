"""API keys checked once are remembered for a moment; revocation still bites."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from promptlooper.auth.cache import PrincipalCache
from promptlooper.auth.models import ApiKey, User
from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.errors import Unauthenticated
from tests.factories import make_actor


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def someone(name: str = "alice") -> Principal:
    return Principal(user_id=uuid.uuid4(), username=name, is_admin=False, method="api_key")


def test_a_key_is_remembered_for_ttl_seconds() -> None:
    clock = Clock()
    cache = PrincipalCache(ttl=2.0, clock=clock)
    alice = someone()
    cache.put("pl_secret", alice)

    assert cache.get("pl_secret") is alice
    assert cache.get("pl_other") is None
    clock.now += 1.9
    assert cache.get("pl_secret") is alice
    clock.now += 0.2
    assert cache.get("pl_secret") is None


def test_the_oldest_key_makes_room_and_zero_ttl_remembers_nothing() -> None:
    cache = PrincipalCache(ttl=60.0, size=2)
    cache.put("a", someone("a"))
    cache.put("b", someone("b"))
    cache.put("c", someone("c"))
    assert [cache.get(k) is not None for k in "abc"] == [False, True, True]

    never = PrincipalCache(ttl=0.0)
    never.put("a", someone())
    assert never.get("a") is None


@pytest.mark.parametrize(
    "elsewhere",
    [
        update(ApiKey).values(revoked_at=utcnow()),  # the key revoked
        update(User).values(is_active=False),  # its user deactivated
    ],
    ids=["revoked", "deactivated"],
)
async def test_a_change_made_by_another_process_bites_within_the_ttl(
    app: FastAPI, client: httpx.AsyncClient, sessionmaker, elsewhere
) -> None:
    clock = Clock()
    app.state.principals = PrincipalCache(ttl=2.0, clock=clock)
    actor = await make_actor(sessionmaker)
    assert (await client.get("/api/auth/me", headers=actor.headers)).status_code == 200

    async with sessionmaker() as session:  # as `promptlooper user ...` would, elsewhere
        await session.execute(elsewhere)
        await session.commit()
    remembered = await client.get("/api/auth/me", headers=actor.headers)
    clock.now += 2.1
    forgotten = await client.get("/api/auth/me", headers=actor.headers)

    assert (remembered.status_code, forgotten.status_code) == (200, 401)


async def test_requests_that_find_a_key_lapsed_share_one_check() -> None:
    cache = PrincipalCache(ttl=2.0)
    alice = someone()
    checks = 0
    release = asyncio.Event()

    async def check() -> Principal:
        nonlocal checks
        checks += 1
        await release.wait()
        return alice

    waiting = [asyncio.ensure_future(cache.resolve("pl_secret", check)) for _ in range(20)]
    await asyncio.sleep(0)
    release.set()

    assert await asyncio.gather(*waiting) == [alice] * 20
    assert checks == 1
    assert await cache.resolve("pl_secret", check) is alice  # remembered: no second check
    assert checks == 1


async def test_a_failed_check_reaches_every_waiter_and_is_not_remembered() -> None:
    cache = PrincipalCache(ttl=2.0)

    async def refuse() -> Principal:
        await asyncio.sleep(0)
        raise Unauthenticated("Invalid API key")

    found = await asyncio.gather(
        *(cache.resolve("pl_bad", refuse) for _ in range(3)), return_exceptions=True
    )
    assert all(isinstance(f, Unauthenticated) for f in found)
    assert cache.get("pl_bad") is None


async def test_a_check_under_way_when_keys_are_forgotten_is_not_remembered() -> None:
    cache = PrincipalCache(ttl=2.0)
    release = asyncio.Event()

    async def check() -> Principal:
        await release.wait()
        return someone()

    under_way = asyncio.ensure_future(cache.resolve("pl_secret", check))
    await asyncio.sleep(0)
    cache.clear()  # a key revoked through this server while the check ran
    release.set()
    await under_way
    assert cache.get("pl_secret") is None
