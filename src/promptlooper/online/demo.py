"""The two experiments ``make demo`` registers (the seed's registry), if they are missing, and
two weeks of visitors for them, so the results pages have something to show: the hero test a
clear lift, the pricing test a skewed split that its sample-ratio check flags."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online import service, tallies
from promptlooper.online.models import OnlineExperiment, VariantTotals
from promptlooper.online.schemas import ExperimentCreate

DEMO_EXPERIMENTS = (
    {
        "experiment_key": "homepage_hero_test",
        "name": "Homepage hero test",
        "description": "Does social proof in the hero lift clicks on the main call to action?",
        "cookie_name": "exp_homepage_hero",
        "eligible_routes": ["/ab-demo"],
        "variants": [
            {"variant_key": "control", "label": "Original", "allocation": 50, "is_control": True},
            {"variant_key": "tiny_gang_social_proof", "label": "Social proof", "allocation": 50},
        ],
    },
    {
        "experiment_key": "pricing_cta_test",
        "name": "Pricing CTA test",
        "description": "Does emphasising the meet-and-greet lift conversions on the pricing page?",
        "cookie_name": "exp_pricing_cta",
        "eligible_routes": ["/our-pricing"],
        "variants": [
            {"variant_key": "control", "label": "Original", "allocation": 50, "is_control": True},
            {"variant_key": "meet_greet_emphasis", "label": "Meet & greet", "allocation": 50},
        ],
    },
)


async def seed_demo(session: AsyncSession, known: service.KnownVariants) -> list[str]:
    """Register the demo experiments that do not exist yet; returns the keys added."""
    existing = set(await session.scalars(select(OnlineExperiment.experiment_key)))
    added = []
    for definition in DEMO_EXPERIMENTS:
        if definition["experiment_key"] not in existing:
            body = ExperimentCreate.model_validate(definition)
            await service.create_experiment(session, body, known)
            added.append(str(definition["experiment_key"]))
    return added


DEMO_TRAFFIC = {
    # experiment → variant → (sessions, chance to convert)
    "homepage_hero_test": {"control": (2500, 0.10), "tiny_gang_social_proof": (2500, 0.14)},
    # A 50/50 experiment whose treatment lost a third of its impressions (a page that broke
    # its tracking): the results must say not to trust it.
    "pricing_cta_test": {"control": (900, 0.08), "meet_greet_emphasis": (600, 0.09)},
}
DEMO_DAYS = 14
DEMO_VALUE = 49.0
BATCH = 1000


def _visits(
    key: str, variant: str, sessions: int, converts: float, now: datetime
) -> list[dict[str, Any]]:
    """Each session's events, as the A/B script sends them: an impression, then perhaps a
    click, a form started and submitted, and a conversion with its value."""
    chance = random.Random(f"{key}/{variant}")  # the same demo every time
    rows = []
    for index in range(sessions):
        began = now - timedelta(days=DEMO_DAYS * index / sessions, minutes=chance.random() * 60)
        steps = ["impression"]
        converted = chance.random() < converts
        if converted or chance.random() < 0.3:
            steps.append("cta_click")
            if converted or chance.random() < 0.7:
                steps.append("form_start")
                if converted or chance.random() < 0.5:
                    steps.append("form_submit")
        if converted:
            steps.append("conversion")
        for step, event_type in enumerate(steps):
            rows.append(
                {
                    "experiment_key": key,
                    "variant_key": variant,
                    "session_id": f"demo-{variant}-{index}",
                    "path": "/",
                    "event_type": event_type,
                    "event_id": None,
                    "value": DEMO_VALUE if event_type == "conversion" else None,
                    "metadata": None,
                    "created_at": began + timedelta(seconds=20 * step),
                }
            )
    return rows


async def seed_demo_events(session: AsyncSession) -> list[str]:
    """Record the demo traffic, through the running totals as ingestion records it, for each
    demo experiment that has no events yet; returns the keys given traffic."""
    counted = set(await session.scalars(select(VariantTotals.experiment_key).distinct()))
    now = datetime.now(UTC)
    seeded = []
    for key, arms in DEMO_TRAFFIC.items():
        if key in counted:
            continue
        rows = [
            row
            for variant, (sessions, converts) in arms.items()
            for row in _visits(key, variant, sessions, converts, now)
        ]
        for start in range(0, len(rows), BATCH):
            await tallies.record(session, rows[start : start + BATCH])
        seeded.append(key)
    return seeded
