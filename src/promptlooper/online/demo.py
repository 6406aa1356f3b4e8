"""The two experiments ``make demo`` registers (the seed's registry), if they are missing."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online import service
from promptlooper.online.models import OnlineExperiment
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
