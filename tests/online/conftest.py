"""Fixtures for online-experiment tests: admin credentials and the seed's registry."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from promptlooper.online import tallies
from promptlooper.online.demo import seed_demo
from promptlooper.online.models import MetricTotals
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


def stored(session_id: str, kind: str, value: float | None = None, **fields) -> dict:
    """An event of homepage_hero_test's control for ``store``: ``kind`` from ``session_id``."""
    return {
        "experiment_key": "homepage_hero_test",
        "variant_key": "control",
        "session_id": session_id,
        "event_type": kind,
        "value": value,
    } | fields


async def store(
    sessionmaker,
    events: list[dict],
    tracked: frozenset[str] = frozenset(),
    windows: dict[str, frozenset[int]] | None = None,
) -> None:
    """Store events as ingestion does (with the running totals, and the metrics' of the event
    names in ``tracked``, with the CUPED covariates of their ``windows``), bypassing HTTP."""
    now = datetime.now(UTC)
    rows = [
        {"path": "/", "event_id": None, "value": None, "metadata": None, "created_at": now} | e
        for e in events
    ]
    async with sessionmaker() as session:
        await tallies.record(session, rows, tracked, windows)
        await session.commit()


async def control_terms(sessionmaker) -> dict[str, float]:
    """The metric terms of the control arms' running totals, by term (``purchase:v``...)."""
    async with sessionmaker() as session:
        rows = await session.execute(
            select(MetricTotals.term, MetricTotals.value).where(
                MetricTotals.variant_key == "control"
            )
        )
        return dict(rows.all())
