"""Guardrails that act: stop an arm that is significantly past a guardrail's threshold, and
resume it by hand. The caller commits.

The test is the sequential one (the always-valid confidence sequence the results show): it
stays valid however often it is run, which is what a check every few seconds needs, where a
fixed-horizon test would stop arms by chance. An arm is past its threshold when the whole
interval of its lift against control lies beyond it: above a positive threshold (a metric
better lower, cost) or below a negative one (better higher, success rate).

A stopped arm's units are served the control from then on (``traffic.served``) but still count
in the arm they are assigned (intent to treat), so a stop leaves the split of units the SRM
check expects as it was; each stop and resume is an audited ``ArmEvent``. An arm resumed by
hand is not stopped again by the guardrail: a person has overruled it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.errors import Conflict, NotFound
from promptlooper.online import results
from promptlooper.online.models import ArmEvent, MetricDefinition, OnlineExperiment
from promptlooper.online.service import lock_experiment

GUARDRAIL = "guardrail"


async def check(session: AsyncSession, experiment: OnlineExperiment) -> list[ArmEvent]:
    """Stop every treatment arm past a guardrail threshold (with ``auto_stop`` on); the
    events of the arms stopped now."""
    rules = experiment.guardrail_thresholds or {}
    if not experiment.auto_stop or not rules:
        return []
    key = experiment.experiment_key
    metrics = {
        m.name: m
        for m in await session.scalars(
            select(MetricDefinition).where(MetricDefinition.name.in_(list(rules)))
        )
    }
    overruled = await _resumed_by_hand(session, key)
    counts = await results.variant_counts(session, key)
    terms = await results.metric_terms(session, key)
    control_key = experiment.variants[0]["variant_key"]
    stopped = []
    for arm in experiment.variants[1:]:
        variant = arm["variant_key"]
        if variant in experiment.stopped_arms or variant in overruled:
            continue
        found = results.arm_breach(
            metrics,
            rules,
            (counts.get(control_key, {}), terms.get(control_key, {})),
            (counts.get(variant, {}), terms.get(variant, {})),
        )
        if found is not None:
            name, numbers = found
            stopped.append(await _stop(session, experiment, variant, name, numbers))
    return stopped


async def _stop(
    session: AsyncSession,
    experiment: OnlineExperiment,
    variant: str,
    metric: str,
    numbers: dict[str, Any],
) -> ArmEvent:
    now = datetime.now(UTC)
    experiment.stopped_arms = {
        **experiment.stopped_arms,
        variant: {"metric": metric, "at": now.isoformat(), **numbers},
    }
    event = ArmEvent(
        experiment_key=experiment.experiment_key,
        variant_key=variant,
        action="stopped",
        metric=metric,
        details=numbers,
        actor=GUARDRAIL,
        created_at=now,
    )
    session.add(event)
    return event


async def resume(session: AsyncSession, key: str, variant: str, actor: str) -> ArmEvent:
    """Serve a stopped arm its own variant again (409 when it is not stopped)."""
    experiment = await lock_experiment(session, key)
    if variant not in {v["variant_key"] for v in experiment.variants}:
        raise NotFound(f"Experiment {key!r} has no arm {variant!r}")
    if variant not in experiment.stopped_arms:
        raise Conflict(f"Arm {variant!r} of {key!r} is not stopped")
    was = experiment.stopped_arms[variant]
    experiment.stopped_arms = {k: v for k, v in experiment.stopped_arms.items() if k != variant}
    event = ArmEvent(
        experiment_key=key,
        variant_key=variant,
        action="resumed",
        metric=was.get("metric"),
        details={"stopped_at": was.get("at")},
        actor=actor,
    )
    session.add(event)
    return event


async def _resumed_by_hand(session: AsyncSession, key: str) -> set[str]:
    rows = await session.scalars(
        select(ArmEvent.variant_key).where(
            ArmEvent.experiment_key == key, ArmEvent.action == "resumed"
        )
    )
    return set(rows)
