"""Fixtures for online-experiment tests: admin credentials and the seed's registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from promptlooper.online import tallies
from promptlooper.online.demo import seed_demo
from promptlooper.variants.service import existing_variant_ids

BROWSER = {"user-agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/130.0 Safari/537.36"}


@pytest.fixture
async def registry(sessionmaker) -> list[str]:
    """The demo registry: homepage_hero_test and pricing_cta_test."""
    async with sessionmaker() as session:
        added = await seed_demo(session, existing_variant_ids)
        await session.commit()
    return added


def event(**changes) -> dict:
    body = {
        "experiment_key": "homepage_hero_test",
        "variant_key": "control",
        "session_id": "session_abcd1234",
        "path": "/",
        "event_name": "cta_click",
        "timestamp": datetime.now(UTC).isoformat(),
    }
    return body | changes


async def store(sessionmaker, events: list[dict]) -> None:
    """Store events as ingestion does (with the running totals), bypassing HTTP."""
    now = datetime.now(UTC)
    rows = [
        {"path": "/", "event_id": None, "value": None, "metadata": None, "created_at": now} | e
        for e in events
    ]
    async with sessionmaker() as session:
        await tallies.record(session, rows)
        await session.commit()
