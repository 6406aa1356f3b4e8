"""Bandit experiments: the weights recomputed on their schedule from the running totals by
Thompson sampling on the primary metric (``thompson.py``). The caller commits.

An update is due once ``every_exposures`` new units were exposed since the last one, or
``every_seconds`` passed with any new unit exposed; it reads the arms' totals (one row per arm
and term, whatever the traffic), never the events. New weights only place new units: assignment
is sticky (``sticky.py``).
"""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online import history, results, stats, thompson, traffic
from promptlooper.online.checks import BANDIT_BUILT_IN
from promptlooper.online.models import MetricDefinition, OnlineExperiment, WeightChange
from promptlooper.online.schemas import BanditSchedule

BANDIT = "bandit"


async def primary(
    session: AsyncSession, experiment: OnlineExperiment
) -> tuple[list[stats.Statistic], bool]:
    """Each arm's primary metric (in the order of the variants), and whether higher is
    better."""
    key = experiment.experiment_key
    counts = await results.variant_counts(session, key)
    arms = [counts.get(v["variant_key"], {}) for v in experiment.variants]
    if experiment.primary_metric == BANDIT_BUILT_IN:
        return [results.arm_metrics(a)["conversion_rate"] for a in arms], True
    definition = await session.scalar(
        select(MetricDefinition).where(MetricDefinition.name == experiment.primary_metric)
    )
    if definition is None:
        return [], True
    terms = await results.metric_terms(session, key)
    found = [
        results.defined_metric(definition, arm, terms.get(v["variant_key"], {}))
        for v, arm in zip(experiment.variants, arms, strict=True)
    ]
    return found, definition.direction == "higher"


async def due(session: AsyncSession, experiment: OnlineExperiment, now: datetime) -> int | None:
    """The units exposed now when an update is due, else None."""
    schedule = BanditSchedule.model_validate(experiment.bandit or {})
    exposed = await history.exposed_total(session, experiment)
    previous = await history.latest(session, experiment.experiment_key, BANDIT)
    since = previous.exposed if previous else 0
    then = previous.created_at if previous else experiment.created_at
    if exposed - since >= schedule.every_exposures:
        return exposed
    if exposed > since and (now - then).total_seconds() >= schedule.every_seconds:
        return exposed
    return None


async def reweigh(
    session: AsyncSession,
    experiment: OnlineExperiment,
    *,
    now: datetime | None = None,
    rng: np.random.Generator | None = None,
    force: bool = False,
) -> WeightChange | None:
    """Recompute a bandit's weights when due (or ``force``); the change recorded, or None
    when not due or there is not yet enough data to move them."""
    if experiment.type != BANDIT:
        return None
    if not force and await due(session, experiment, now or datetime.now(UTC)) is None:
        return None
    arms, higher = await primary(session, experiment)
    if not arms:
        return None
    chances = thompson.chance_best(
        [a.mean for a in arms],
        [a.variance for a in arms],
        [a.n for a in arms],
        higher_is_better=higher,
        rng=rng or np.random.default_rng(),
    )
    if chances is None:
        return None
    schedule = BanditSchedule.model_validate(experiment.bandit or {})
    experiment.weights = traffic.with_floor(chances, schedule.floor)
    return await history.record(session, experiment, BANDIT)
