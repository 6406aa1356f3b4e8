"""Results over time: per UTC day, what each arm had gathered by that day's end: exposed and
converting sessions from the rows ingestion keeps per day (``online/tallies.py``), and the
defined metrics' terms from the pictures the server's upkeep keeps of them (``keep``), today's
from the running totals. Each day's picture is computed as the results compute today's
(``results.compared``), so the last day of a series is the results table's number."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, FromClause, and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.upsert import insert_or_set
from promptlooper.online import history, results, stats
from promptlooper.online.models import (
    DailyTotals,
    MetricDays,
    MetricDefinition,
    MetricTotals,
    OnlineExperiment,
)

MAX_DAYS = 366
"""The series over time show at most this many days, the latest: one row per arm and day
(and per term of the primary metric)."""

Sums = dict[tuple[str, ...], list[float]]
"""Per key of a daily table's row (its variant, and its term), the sums of its values."""


async def over_time(
    session: AsyncSession, key: str, variant_keys: Sequence[str], *, until: date | None = None
) -> dict[str, Any]:
    """Cumulative exposed sessions and conversion rate per variant, and each treatment's
    relative lift in conversion rate against the first variant (control), per UTC day; with
    a defined primary metric, its ``metric`` block too (``_metric``), else None. Days before
    the window are added up into its first. Up to today (``until`` None), today's metric is
    read from the running totals."""
    today = datetime.now(UTC).date()
    last = until or today
    first = last - timedelta(days=MAX_DAYS - 1)
    running, by_day = await _window(
        session, DailyTotals.__table__, key, first, last, ("exposed", "converting")
    )
    primary = await session.scalar(
        select(MetricDefinition)
        .join(OnlineExperiment, OnlineExperiment.primary_metric == MetricDefinition.name)
        .where(OnlineExperiment.experiment_key == key)
    )
    metric_running: Sums = {}
    metric_by_day: dict[date, Sums] = {}
    if primary is not None:
        metric_running, metric_by_day = await _standing(session, key, primary, first, last)
        if last == today:
            metric_by_day[today] = await _live(session, key, primary)
    exposed = {v: running.get((v,), [0.0, 0.0]) for v in variant_keys}
    terms: dict[str, dict[str, float]] = defaultdict(dict)
    for (variant, term), (value,) in metric_running.items():
        terms[variant][term] = value
    days: list[date] = []
    exposed_series: dict[str, list[int]] = {v: [] for v in variant_keys}
    rates: dict[str, list[float | None]] = {v: [] for v in variant_keys}
    arms: list[list[tuple[dict[str, float], dict[str, float]]]] = []
    if by_day or metric_by_day:
        day, end = min([*by_day, *metric_by_day]), max([*by_day, *metric_by_day])
        while day <= end:
            for (variant,), added in by_day.get(day, {}).items():
                if variant in exposed:
                    exposed[variant] = [a + b for a, b in zip(exposed[variant], added, strict=True)]
            for (variant, term), (value,) in metric_by_day.get(day, {}).items():
                terms[variant][term] = value
            days.append(day)
            for variant, (sessions, converting) in exposed.items():
                exposed_series[variant].append(int(sessions))
                rates[variant].append(converting / sessions if sessions else None)
            arms.append([({"exposed": exposed[v][0]}, dict(terms[v])) for v in variant_keys])
            day += timedelta(days=1)
    control = rates[variant_keys[0]] if variant_keys else []
    lifts = {
        variant: [
            (t - c) / c if t is not None and c else None
            for t, c in zip(rates[variant], control, strict=True)
        ]
        for variant in variant_keys[1:]
    }
    return {
        "days": days,
        "exposed": exposed_series,
        "conversion_rate": rates,
        "lift": lifts,
        "metric": None if primary is None else _metric(primary, variant_keys, arms),
    }


def _metric(
    metric: MetricDefinition,
    variant_keys: Sequence[str],
    days: list[list[tuple[dict[str, float], dict[str, float]]]],
) -> dict[str, Any]:
    """A defined primary metric per day: its name and direction, each arm's units and mean (an
    arm without units: None) and each treatment's relative lift against control, as the
    results table has them (a CUPED lift adjusted, its means not); None where the table has no
    comparison (an arm with fewer than two units, no variance, or a control mean of zero)."""
    units: dict[str, list[int]] = {v: [] for v in variant_keys}
    means: dict[str, list[float | None]] = {v: [] for v in variant_keys}
    lifts: dict[str, list[float | None]] = {v: [] for v in variant_keys[1:]}
    for arms in days:
        control = arms[0]
        for variant, arm in zip(variant_keys, arms, strict=True):
            found = results.defined_metric(metric, *arm)
            units[variant].append(found.n)
            means[variant].append(found.unadjusted_mean if found.n else None)
            if variant in lifts:
                effect = stats.effect(*results.compared(metric, control, arm))
                lifts[variant].append(None if effect is None else effect.estimate)
    return {
        "name": metric.name,
        "direction": metric.direction,
        "units": units,
        "mean": means,
        "lift": lifts,
    }


def _terms_of(term: Any, metric: MetricDefinition) -> ColumnElement[bool]:
    """The terms (``term``: a table's column) a defined metric is computed from: its
    source's, and the term counting its units when that is not the exposed sessions
    (``history.units_term``)."""
    found = term.startswith(f"{results.source_of(metric)}:", autoescape=True)
    units = history.units_term(metric)
    return found if units is None else or_(found, term == units)


async def _standing(
    session: AsyncSession, key: str, metric: MetricDefinition, first: date, last: date
) -> tuple[Sums, dict[date, Sums]]:
    """A defined metric's terms as they stood before ``first`` (each term's last picture
    before it) and the pictures of each day from ``first`` to ``last``."""
    kept = [MetricDays.experiment_key == key, _terms_of(MetricDays.term, metric)]
    latest = (
        select(MetricDays.variant_key, MetricDays.term, func.max(MetricDays.day).label("day"))
        .where(*kept, MetricDays.day < first)
        .group_by(MetricDays.variant_key, MetricDays.term)
        .subquery()
    )
    before = await session.execute(
        select(MetricDays.variant_key, MetricDays.term, MetricDays.value)
        .join(
            latest,
            and_(
                MetricDays.variant_key == latest.c.variant_key,
                MetricDays.term == latest.c.term,
                MetricDays.day == latest.c.day,
            ),
        )
        .where(MetricDays.experiment_key == key)
    )
    running: Sums = {(variant, term): [value] for variant, term, value in before.all()}
    rows = await session.execute(
        select(MetricDays.day, MetricDays.variant_key, MetricDays.term, MetricDays.value).where(
            *kept, MetricDays.day >= first, MetricDays.day <= last
        )
    )
    by_day: dict[date, Sums] = {}
    for day, variant, term, value in rows.all():
        by_day.setdefault(day, {})[(variant, term)] = [value]
    return running, by_day


async def _live(session: AsyncSession, key: str, metric: MetricDefinition) -> Sums:
    """A defined metric's terms as they stand now."""
    rows = await session.execute(
        select(MetricTotals.variant_key, MetricTotals.term, MetricTotals.value).where(
            MetricTotals.experiment_key == key, _terms_of(MetricTotals.term, metric)
        )
    )
    return {(variant, term): [value] for variant, term, value in rows.all()}


async def keep(session: AsyncSession, keys: Sequence[str], day: date) -> None:
    """Keep the experiments' terms as they stand now as ``day``'s picture (the last one
    written on a day is the one that stays). The caller commits."""
    rows = await session.execute(
        select(MetricTotals.experiment_key, MetricTotals.variant_key, MetricTotals.term,
               MetricTotals.value)
        .where(MetricTotals.experiment_key.in_(list(keys)))
        .order_by(MetricTotals.experiment_key, MetricTotals.variant_key, MetricTotals.term)
    )  # fmt: skip
    await insert_or_set(
        session,
        MetricDays.__table__,  # type: ignore[arg-type]
        ("experiment_key", "variant_key", "term", "day"),
        [{"experiment_key": k, "variant_key": v, "term": t, "day": day, "value": x}
         for k, v, t, x in rows.all()],
    )  # fmt: skip


async def _window(
    session: AsyncSession,
    table: FromClause,
    key: str,
    first: date,
    last: date,
    values: tuple[str, ...],
) -> tuple[Sums, dict[date, Sums]]:
    """Of an experiment's rows of a table of daily counts (keyed by variant and day), the sums
    of ``values`` over the days before ``first``, and per day from ``first`` to ``last`` its
    rows' values: at most one row per variant and day is read from the window."""
    variant = table.c.variant_key
    keyed = table.c.experiment_key == key
    before = await session.execute(
        select(variant, *(func.sum(table.c[name]) for name in values))
        .where(keyed, table.c.day < first)
        .group_by(variant)
    )
    running = {(row[0],): [float(v or 0) for v in row[1:]] for row in before.all()}
    rows = await session.execute(
        select(table.c.day, variant, *(table.c[name] for name in values))
        .where(keyed, table.c.day >= first, table.c.day <= last)
        .order_by(table.c.day)
    )
    by_day: dict[date, Sums] = {}
    for day, arm, *counts in rows.all():
        by_day.setdefault(day, {})[(arm,)] = [float(v) for v in counts]
    return running, by_day
