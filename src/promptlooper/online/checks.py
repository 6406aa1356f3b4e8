"""What an experiment's guardrail thresholds and bandit settings must satisfy beyond their
shape: the rules that need the metric registry (a metric's direction). Each failure is a 422
naming the field."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.errors import FieldInvalid
from promptlooper.online.models import MetricDefinition
from promptlooper.online.schemas import ExperimentDefinition

BANDIT_BUILT_IN = "conversion"
"""The one built-in event a bandit can optimise (its conversion rate); any other primary
metric must be defined."""


async def check(session: AsyncSession, body: ExperimentDefinition) -> None:
    names = set(body.guardrail_thresholds)
    if body.type == "bandit":
        names.add(body.primary_metric)
    found = {
        m.name: m
        for m in await session.scalars(
            select(MetricDefinition).where(MetricDefinition.name.in_(names))
        )
    }
    for name, rule in body.guardrail_thresholds.items():
        field = f"guardrail_thresholds.{name}"
        metric = found.get(name)
        if metric is None:
            raise FieldInvalid(field, f"a threshold needs a defined metric; define {name!r} first")
        if metric.direction == "lower" and rule.threshold < 0:
            raise FieldInvalid(
                f"{field}.threshold",
                f"{name!r} is better lower, so harm is a rise: give a "
                f"positive threshold (e.g. {-rule.threshold:g}), not {rule.threshold:g}",
            )
        if metric.direction == "higher" and rule.threshold > 0:
            raise FieldInvalid(
                f"{field}.threshold",
                f"{name!r} is better higher, so harm is a fall: give a "
                f"negative threshold (e.g. {-rule.threshold:g}), not {rule.threshold:g}",
            )
    if body.type == "bandit":
        if body.primary_metric != BANDIT_BUILT_IN and body.primary_metric not in found:
            raise FieldInvalid(
                "primary_metric",
                f"a bandit optimises {BANDIT_BUILT_IN!r} or a defined metric, "
                f"not {body.primary_metric!r}",
            )
        floor = body.bandit.floor if body.bandit else 0.0
        if floor * len(body.variants) >= 1:
            raise FieldInvalid(
                "bandit.floor",
                f"{floor:g} for each of {len(body.variants)} arms leaves nothing "
                "to learn with; lower it",
            )
