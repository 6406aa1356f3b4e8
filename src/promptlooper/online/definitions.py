"""Metric definitions: the registry of metrics experiments name, and the names ingestion
accepts. The caller commits.

A metric measures one event name (``source``) per unit. Defining a metric on a new name makes
ingestion accept that name; the events of every defined metric's source are kept per session
(``tallies.py``) from then on, so a metric defined on a built-in event after an experiment
started counts that event from its definition on.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.errors import Conflict, FieldInvalid, NotFound
from promptlooper.online.models import MetricDefinition, OnlineExperiment
from promptlooper.online.schemas import EVENT_TYPES, ExperimentDefinition, MetricCreate
from promptlooper.online.tallies import CrossRatio

ROLES = ("primary_metric", "secondary_metrics", "guardrail_metrics")


async def create_metric(session: AsyncSession, body: MetricCreate) -> MetricDefinition:
    if body.name in EVENT_TYPES:
        raise FieldInvalid("name", f"{body.name!r} is a built-in event; name the metric otherwise")
    metric = MetricDefinition(**body.stored())
    session.add(metric)
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError as exc:
        if body.project_id is not None and "project" in str(exc.orig).lower():
            raise FieldInvalid("project_id", f"no project {body.project_id}") from exc
        raise Conflict(f"A metric named {body.name!r} exists") from exc
    return metric


async def list_metrics(
    session: AsyncSession, project_id: uuid.UUID | None = None
) -> list[MetricDefinition]:
    """Every metric, or a project's and the site-wide ones."""
    query = select(MetricDefinition).order_by(MetricDefinition.name)
    if project_id is not None:
        query = query.where(
            (MetricDefinition.project_id == project_id) | MetricDefinition.project_id.is_(None)
        )
    return list(await session.scalars(query))


async def get_metric(session: AsyncSession, name: str) -> MetricDefinition:
    metric = await session.scalar(select(MetricDefinition).where(MetricDefinition.name == name))
    if metric is None:
        raise NotFound(f"No metric named {name!r}")
    return metric


async def delete_metric(session: AsyncSession, name: str) -> None:
    """Refused (409) while an experiment that is not archived names it: its results would lose
    the metric silently."""
    metric = await get_metric(session, name)
    experiments = await session.scalars(
        select(OnlineExperiment).where(OnlineExperiment.archived_at.is_(None))
    )
    for experiment in experiments:
        if name in named(experiment):
            raise Conflict(
                f"metric {name!r} is named by online experiment {experiment.experiment_key!r}; "
                "change or archive the experiment first"
            )
    await session.delete(metric)
    await session.flush()


def named(experiment: OnlineExperiment) -> list[str]:
    """The metrics an experiment names, primary first, each once."""
    names = [experiment.primary_metric, *experiment.secondary_metrics]
    names += experiment.guardrail_metrics
    return list(dict.fromkeys(names))


async def check_names(session: AsyncSession, body: ExperimentDefinition) -> None:
    """Every metric an experiment names is a built-in event type or a defined metric (422
    naming the field otherwise): a misspelt name would leave the results without it."""
    defined = set(await session.scalars(select(MetricDefinition.name)))
    known = defined | set(EVENT_TYPES)
    for role in ROLES:
        value = getattr(body, role)
        for index, name in enumerate([value] if isinstance(value, str) else value):
            if name not in known:
                where = role if isinstance(value, str) else f"{role}.{index}"
                raise FieldInvalid(where, f"no metric named {name!r}; define it first")


async def tracked_events(session: AsyncSession) -> frozenset[str]:
    """The event names defined metrics measure (a cross-source ratio's event denominator
    included): ingestion accepts them and keeps them per session."""
    query = select(MetricDefinition.source).where(MetricDefinition.kind == "event")
    denominators = select(MetricDefinition.denominator).where(
        MetricDefinition.denominator_kind == "event"
    )
    return frozenset(await session.scalars(query.union(denominators)))


async def cross_ratios(session: AsyncSession) -> list[CrossRatio]:
    """The cross-source ratio metrics defined now: both write paths keep their units' sides
    from the metric's definition on, as for any metric's events."""
    rows = await session.execute(
        select(
            MetricDefinition.id,
            MetricDefinition.kind,
            MetricDefinition.source,
            MetricDefinition.denominator_kind,
            MetricDefinition.denominator,
        )
        .where(MetricDefinition.denominator_kind.is_not(None))
        .order_by(MetricDefinition.id)
    )
    return [CrossRatio(str(i), (k, s), (dk, d)) for i, k, s, dk, d in rows.all()]


async def cuped_windows(session: AsyncSession) -> dict[str, frozenset[int]]:
    """Per event name, the pre-exposure windows (days) of the CUPED metrics measuring it:
    ingestion keeps each exposed session's covariate for each."""
    rows = await session.execute(
        select(MetricDefinition.source, MetricDefinition.cuped_window_days)
        .where(MetricDefinition.kind == "event", MetricDefinition.cuped.is_(True))
        .distinct()
    )
    windows: dict[str, set[int]] = {}
    for source, days in rows.all():
        if days is not None:
            windows.setdefault(source, set()).add(days)
    return {source: frozenset(days) for source, days in windows.items()}
