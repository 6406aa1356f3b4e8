"""The history of a bandit's weights in force, and the split of units the SRM check expects
from it. The caller commits.

Each change records how many units the experiment had exposed when it took effect, so the
units exposed under each set of weights are differences of running totals: the expected split
is Σ over periods of (units exposed in the period × that period's weights), never a scan of the
events. Units are counted at their first exposure, which for a sticky bandit is when they were
assigned, so a period's new units followed that period's weights. A guardrail's stop changes
what a unit is served, not the arm it counts in, so it is no change of the split.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Row, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online import traffic
from promptlooper.online.models import (
    ArmEvent,
    MetricDefinition,
    MetricTotals,
    OnlineExperiment,
    VariantTotals,
    WeightChange,
)
from promptlooper.online.tallies import PERFORMANCE, ratio_source

SERVED_UNITS = f"{PERFORMANCE}calls:units"
"""The running term counting the units an arm served performance records for."""


def units_term(metric: MetricDefinition | None) -> str | None:
    """The running term (``MetricTotals``) counting, per arm, the units a metric (a built-in
    one: None) is measured on, each once: a cross-source ratio's units exposed or served (the
    ratio keeps them among its own terms), a performance metric's units served; None for the
    sessions an impression exposed, which the variant totals count."""
    if metric is None:
        return None
    if metric.denominator_kind is not None:
        return f"{ratio_source(metric.id)}:units"
    return SERVED_UNITS if metric.kind == "performance" else None


async def exposed_total(session: AsyncSession, experiment: OnlineExperiment) -> int:
    """Units the experiment has exposed, over all arms, from the running totals: what a
    bandit's schedule counts, and what the periods of the SRM check are measured in. They are
    counted as the results count an arm's units, so the two stay comparable: the units its
    primary metric is measured on (``units_term``), each once."""
    key = experiment.experiment_key
    primary = await session.scalar(
        select(MetricDefinition).where(MetricDefinition.name == experiment.primary_metric)
    )
    term = units_term(primary)
    if term is not None:
        total = select(func.sum(MetricTotals.value)).where(
            MetricTotals.experiment_key == key, MetricTotals.term == term
        )
    else:
        total = select(func.sum(VariantTotals.exposed)).where(VariantTotals.experiment_key == key)
    return int(await session.scalar(total) or 0)


async def record(session: AsyncSession, experiment: OnlineExperiment, reason: str) -> WeightChange:
    """Note that the experiment's current weights are in force from now on."""
    keys = [v["variant_key"] for v in experiment.variants]
    change = WeightChange(
        experiment_key=experiment.experiment_key,
        weights=dict(zip(keys, traffic.hashing_weights(experiment), strict=True)),
        exposed=await exposed_total(session, experiment),
        reason=reason,
    )
    session.add(change)
    await session.flush()
    return change


_CHANGE = (
    WeightChange.experiment_key,
    WeightChange.weights,
    WeightChange.exposed,
    WeightChange.reason,
    WeightChange.created_at,
)
"""What the results read of a change: its columns as plain rows, not ORM objects, which cost
several times more to build and a bandit updated hourly has hundreds of changes."""
_ORDER = (WeightChange.created_at, WeightChange.id)


async def changes(session: AsyncSession, key: str) -> list[Row[Any]]:
    """The experiment's changes, oldest first (``_CHANGE``)."""
    query = select(*_CHANGE).where(WeightChange.experiment_key == key).order_by(*_ORDER)
    return list((await session.execute(query)).all())


async def latest(session: AsyncSession, key: str, reason: str) -> WeightChange | None:
    """The experiment's last change of ``reason``."""
    query = select(WeightChange).where(
        WeightChange.experiment_key == key, WeightChange.reason == reason
    )
    order = (WeightChange.created_at.desc(), WeightChange.id.desc())
    return await session.scalar(query.order_by(*order).limit(1))


async def changes_of(session: AsyncSession, keys: Sequence[str]) -> dict[str, list[Row[Any]]]:
    """``changes`` of several experiments in one query."""
    found: dict[str, list[Row[Any]]] = {key: [] for key in keys}
    query = select(*_CHANGE).where(WeightChange.experiment_key.in_(list(keys)))
    for change in await session.execute(query.order_by(*_ORDER)):
        found[change.experiment_key].append(change)
    return found


async def arm_events(session: AsyncSession, key: str) -> list[ArmEvent]:
    """The audit trail of the experiment's arms stopped and resumed, oldest first."""
    query = select(ArmEvent).where(ArmEvent.experiment_key == key)
    return list(await session.scalars(query.order_by(ArmEvent.created_at, ArmEvent.id)))


async def summary(
    session: AsyncSession, experiment: OnlineExperiment, found: Sequence[Row[Any]]
) -> dict[str, Any]:
    """What the results show of guardrails and weights: stopped arms with the audit trail,
    the shares of traffic served now, and a bandit's weights with their history (``found``:
    the experiment's ``changes``, which the caller has read for the SRM check already)."""
    key = experiment.experiment_key
    return {
        "guardrails": {
            "auto_stop": experiment.auto_stop,
            "thresholds": experiment.guardrail_thresholds or {},
            "stopped_arms": experiment.stopped_arms or {},
            "events": [public_event(e) for e in await arm_events(session, key)],
        },
        "traffic": {
            "type": experiment.type,
            "shares": traffic.shares(experiment),
            "weights": experiment.weights,
            "history": [public(c) for c in found],
        },
    }


def expected_shares(
    experiment: OnlineExperiment, found: Sequence[Row[Any]], exposed: int
) -> list[float]:
    """Per variant (in order), the share of the ``exposed`` units the weights in force while
    they arrived predict; the allocations when nothing changed."""
    keys = [v["variant_key"] for v in experiment.variants]
    configured = [v["allocation"] / 100 for v in experiment.variants]
    if not found or exposed <= 0:
        return configured
    periods: list[tuple[int, list[float]]] = [(0, configured)]
    periods += [(c.exposed, [float(c.weights.get(k, 0.0)) for k in keys]) for c in found]
    expected = [0.0] * len(keys)
    for index, (start, weights) in enumerate(periods):
        end = periods[index + 1][0] if index + 1 < len(periods) else exposed
        span = max(0, min(end, exposed) - start)
        for arm, weight in enumerate(weights):
            expected[arm] += span * weight
    total = sum(expected)
    return [e / total for e in expected] if total else configured


def public_event(event: ArmEvent) -> dict[str, Any]:
    return {
        "at": event.created_at.isoformat(),
        "variant_key": event.variant_key,
        "action": event.action,
        "metric": event.metric,
        "actor": event.actor,
        "details": event.details,
    }


def public(change: Row[Any]) -> dict[str, Any]:
    return {
        "at": change.created_at.isoformat(),
        "reason": change.reason,
        "exposed": change.exposed,
        "weights": change.weights,
    }
