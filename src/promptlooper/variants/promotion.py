"""Promote a sweep's result to a variant: the best config of an experiment (or a chosen one)
becomes a variant of an agent, with the experiment recorded as its origin."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.errors import Invalid, NotFound
from promptlooper.sweeps import service as sweeps
from promptlooper.variants import service
from promptlooper.variants.config import from_sweep_config
from promptlooper.variants.models import Variant


async def from_experiment(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    experiment_id: uuid.UUID,
    *,
    config_hash: str | None = None,
    name: str | None = None,
    description: str = "",
) -> tuple[Variant, list[str]]:
    """The new variant and the sweep parameters that have no agent field (not carried over)."""
    agent = await service.get_agent(session, principal, agent_id)
    experiment = await sweeps.get_experiment(session, principal, experiment_id)
    summary = await sweeps.summary(session, experiment)
    candidates = [c for c in summary.ranked if config_hash in (None, c.config_hash)]
    if not candidates:
        if config_hash is not None:
            raise NotFound(f"No scored config {config_hash!r} in this experiment")
        raise Invalid("experiment_id: the experiment has no scored runs yet")
    chosen = candidates[0]
    assert chosen.best_run_id is not None
    run, _, _ = await sweeps.get_run(session, principal, experiment.id, chosen.best_run_id)
    overrides, unmapped = from_sweep_config(run.config)
    variant = await service.create_variant(
        session,
        principal,
        agent.id,
        name=name or f"{experiment.name} {chosen.config_hash[:8]}",
        description=description or f"Promoted from experiment {experiment.name!r}",
        overrides=overrides,
        origin={
            "experiment_id": str(experiment.id),
            "config_hash": chosen.config_hash,
            "score": chosen.score,
            "run_id": str(run.id),
        },
    )
    return variant, unmapped
