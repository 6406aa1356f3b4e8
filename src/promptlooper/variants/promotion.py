"""Sweeps and variants, both ways: a sweep that starts from an agent's (or a variant's)
effective config, and promotion of a sweep's best config (or a chosen one) to a variant with
the experiment recorded as its origin."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.errors import NotFound
from promptlooper.sweeps import service as sweeps
from promptlooper.sweeps.models import Experiment
from promptlooper.sweeps.providers import ProviderPolicy
from promptlooper.sweeps.spec import parse_spec
from promptlooper.sweeps.summary import choose
from promptlooper.variants import service
from promptlooper.variants.config import as_sweep, from_sweep_config
from promptlooper.variants.models import Variant
from promptlooper.variants.resolver import resolve


async def sweep_of(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    document: Mapping[str, Any],
    *,
    variant_id: uuid.UUID | None = None,
    policy: ProviderPolicy,
    max_runs: int,
    allow_python: bool = False,
) -> Experiment:
    """An experiment in the agent's project sweeping ``document`` around the config the agent
    serves now, or around ``variant_id``'s config; its budget fields are enforced per run."""
    agent = await service.get_agent(session, principal, agent_id)
    if variant_id is None:
        config = (await service.resolution(session, agent)).config
    else:
        _, variant = await service.get_variant(session, principal, agent.id, variant_id)
        config = resolve(agent, variant).config
    spec = parse_spec(as_sweep(config, {"name": f"{agent.name} sweep", **document}))
    return await sweeps.create_experiment(
        session,
        principal,
        agent.project_id,
        spec,
        policy=policy,
        max_runs=max_runs,
        allow_python=allow_python,
    )


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
    chosen = choose(summary.ranked, config_hash)
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


async def into_new_agent(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    experiment_id: uuid.UUID,
    *,
    agent_name: str,
    config_hash: str | None = None,
    name: str | None = None,
) -> tuple[Variant, list[str]]:
    """Promote a config to a variant of a new agent of the project, whose base config is the
    promoted config itself (an agent needs a model, and a sweep's config is the only one at
    hand). Both are created in the caller's transaction, so a refusal leaves neither."""
    experiment = await sweeps.get_experiment(session, principal, experiment_id)
    if experiment.project_id != project_id:
        raise NotFound("Experiment not found")
    summary = await sweeps.summary(session, experiment)
    chosen = choose(summary.ranked, config_hash)
    assert chosen.best_run_id is not None
    run, _, _ = await sweeps.get_run(session, principal, experiment.id, chosen.best_run_id)
    fields, _ = from_sweep_config(run.config)
    agent = await service.create_agent(
        session,
        principal,
        project_id,
        name=agent_name,
        fields=fields,
        description=f"Created from experiment {experiment.name!r}",
    )
    return await from_experiment(
        session, principal, agent.id, experiment.id, config_hash=chosen.config_hash, name=name
    )
