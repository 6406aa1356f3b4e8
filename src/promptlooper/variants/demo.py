"""The agent ``make demo`` sets up, so that the Agents pages have something to show: two
variants of a ticket triager, one active, with a week of served calls each."""

from __future__ import annotations

import random
import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.variants import performance, service

DEMO_AGENT = "Ticket triage"
BASE_CONFIG: dict[str, Any] = {
    "model_provider": "local",
    "model_name": "smollm2-135m-instruct",
    "system_prompt": "Classify support tickets as billing, bug, account or shipping.",
    "user_prompt_template": "{{ input }}",
    "temperature": 0.7,
    "max_tokens": 16,
}
VARIANTS: tuple[dict[str, Any], ...] = (
    {
        "name": "concise",
        "overrides": {"temperature": 0.0, "system_prompt": "Answer with one word."},
        "calls": {"success": 0.93, "latency": 180.0, "quality": 0.82, "tokens_out": 2},
    },
    {
        "name": "careful",
        "overrides": {"max_tokens": 64},
        "calls": {"success": 0.86, "latency": 320.0, "quality": 0.74, "tokens_out": 9},
    },
)
CALLS_PER_VARIANT = 240


def _calls(variant_id: uuid.UUID, profile: dict[str, float], rng: random.Random) -> list[dict]:
    now = utcnow()
    calls = []
    for _ in range(CALLS_PER_VARIANT):
        tokens_in = rng.randint(40, 160)
        tokens_out = max(1, round(rng.gauss(profile["tokens_out"], 1.5)))
        succeeded = rng.random() < profile["success"]
        calls.append(
            {
                "variant_id": variant_id,
                "latency_ms": round(rng.gammavariate(4.0, profile["latency"] / 4.0), 1),
                "tokens_in": tokens_in,
                "tokens_out": tokens_out,
                "cost": round((tokens_in * 0.15 + tokens_out * 0.6) / 1_000_000, 9),
                "success": succeeded,
                "quality": round(min(1.0, max(0.0, rng.gauss(profile["quality"], 0.12))), 3),
                "error": None if succeeded else "timed out",
                "timestamp": now - timedelta(minutes=rng.uniform(5, 7 * 24 * 60)),
            }
        )
    return calls


async def seed_demo_agent(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID
) -> bool:
    """Create the demo agent unless the project has it; True when it was created."""
    agents, _ = await service.list_agents(session, principal, project_id)
    if any(agent.name == DEMO_AGENT for agent in agents):
        return False
    agent = await service.create_agent(
        session, principal, project_id, name=DEMO_AGENT, fields=BASE_CONFIG
    )
    rng = random.Random(20261205)
    for spec in VARIANTS:
        variant = await service.create_variant(
            session, principal, agent.id, name=spec["name"], overrides=spec["overrides"]
        )
        await performance.record(
            session, principal, agent.id, _calls(variant.id, spec["calls"], rng)
        )
        if spec is VARIANTS[0]:
            await service.activate(
                session, principal, agent.id, variant.id, reason="demo: the faster variant"
            )
    return True
