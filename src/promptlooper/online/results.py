"""Results of an online experiment: the seed's per-variant counts, statistics against
control, and the experiment's health. Kept apart from the registry service because the
statistics need SciPy, which every other caller of the service should not pay to import."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.online import stats
from promptlooper.online.models import ExperimentEvent, Rejection
from promptlooper.online.service import get_experiment

_COUNTED = {
    "impressions": "impression",
    "cta_clicks": "cta_click",
    "form_starts": "form_start",
    "form_submits": "form_submit",
    "conversions": "conversion",
}


def _count(event_type: str) -> Any:
    return func.sum(case((ExperimentEvent.event_type == event_type, 1), else_=0))


async def variant_counts(session: AsyncSession, key: str) -> dict[str, dict[str, float]]:
    """Per variant: event counts, sessions, exposed (with an impression) and converting
    sessions, and the sum and sum of squares of value per exposed session."""
    per_session = (
        select(
            ExperimentEvent.variant_key.label("variant_key"),
            *(_count(kind).label(name) for name, kind in _COUNTED.items()),
            func.coalesce(func.sum(ExperimentEvent.value), 0.0).label("value"),
        )
        .where(ExperimentEvent.experiment_key == key)
        .group_by(ExperimentEvent.variant_key, ExperimentEvent.session_id)
        .subquery()
    )
    exposed = per_session.c.impressions > 0
    query = select(
        per_session.c.variant_key,
        *(func.sum(per_session.c[name]).label(name) for name in _COUNTED),
        func.count().label("unique_sessions"),
        func.sum(case((exposed, 1), else_=0)).label("exposed"),
        func.sum(case((exposed & (per_session.c.conversions > 0), 1), else_=0)).label("converting"),
        func.sum(per_session.c.value).label("value_total"),
        func.sum(case((exposed, per_session.c.value), else_=0.0)).label("value_exposed"),
        func.sum(case((exposed, per_session.c.value * per_session.c.value), else_=0.0)).label(
            "value_squares"
        ),
    ).group_by(per_session.c.variant_key)
    rows = (await session.execute(query)).mappings().all()
    return {
        row["variant_key"]: {k: float(v or 0) for k, v in row.items() if k != "variant_key"}
        for row in rows
    }


async def rejection_counts(session: AsyncSession, key: str) -> dict[str, int]:
    rows = await session.execute(
        select(Rejection.reason, Rejection.count).where(Rejection.experiment_key == key)
    )
    return {reason: int(count) for reason, count in rows.all()}


def seed_fields(variant_key: str, counts: dict[str, float] | None) -> dict[str, Any]:
    """The seed's per-variant result fields; conversion rate = converting exposed sessions
    over exposed sessions."""
    c = counts or {}
    exposed = c.get("exposed", 0.0)
    return {
        "variant_key": variant_key,
        **{name: int(c.get(name, 0)) for name in _COUNTED},
        "unique_sessions": int(c.get("unique_sessions", 0)),
        "conversion_rate": c.get("converting", 0.0) / exposed if exposed else 0.0,
        "conversion_value_total": float(c.get("value_total", 0.0)),
    }


MIN_UNITS = 100
"""Exposed sessions each arm needs before the results call a winner."""
SRM_THRESHOLD = 0.001


async def multiple_exposure(session: AsyncSession, key: str) -> tuple[int, int]:
    """Sessions seen in more than one variant, and sessions in all."""
    per_session = (
        select(func.count(func.distinct(ExperimentEvent.variant_key)).label("arms"))
        .where(ExperimentEvent.experiment_key == key)
        .group_by(ExperimentEvent.session_id)
        .subquery()
    )
    row = (
        await session.execute(
            select(func.sum(case((per_session.c.arms > 1, 1), else_=0)), func.count())
        )
    ).one()
    return int(row[0] or 0), int(row[1] or 0)


def _arm_metrics(counts: dict[str, float]) -> dict[str, stats.Moments]:
    exposed = int(counts.get("exposed", 0))
    return {
        "conversion_rate": stats.Moments.binary(exposed, counts.get("converting", 0.0)),
        "value_per_session": stats.Moments(
            exposed, counts.get("value_exposed", 0.0), counts.get("value_squares", 0.0)
        ),
    }


def _adjust(blocks: list[dict[str, Any]], correction: str) -> None:
    """Adjust every frequentist p-value for the number of comparisons made."""
    tested = [b for b in blocks if "frequentist" in b]
    if len(tested) < 2:
        return
    raw = [b["frequentist"]["p_value"] for b in tested]
    adjusted = stats.holm(raw) if correction == "holm" else stats.benjamini_hochberg(raw)
    for block, value in zip(tested, adjusted, strict=True):
        block["frequentist"]["p_value_adjusted"] = value
        block["frequentist"]["correction"] = correction


async def compute(
    session: AsyncSession, keys: Sequence[str], *, correction: str = "holm"
) -> list[dict[str, Any]]:
    """Per experiment: the seed's fields per variant (control first), a ``stats`` block for
    each treatment against control (conversion rate and value per exposed session), and the
    experiment's health."""
    answer = []
    for key in keys:
        experiment = await get_experiment(session, key)
        counts = await variant_counts(session, key)
        arms = [counts.get(v["variant_key"], {}) for v in experiment.variants]
        control = _arm_metrics(arms[0])
        variants = [seed_fields(experiment.variants[0]["variant_key"], arms[0])]
        blocks: list[dict[str, Any]] = []
        for definition, arm in zip(experiment.variants[1:], arms[1:], strict=True):
            treatment = _arm_metrics(arm)
            compared = {m: stats.compare(control[m], treatment[m]) for m in control}
            blocks.extend(compared.values())
            variants.append(seed_fields(definition["variant_key"], arm) | {"stats": compared})
        _adjust(blocks, correction)
        exposed = [a.get("exposed", 0.0) for a in arms]
        srm = stats.srm_p_value(exposed, [v["allocation"] for v in experiment.variants])
        rejected = await rejection_counts(session, key)
        multiple, sessions = await multiple_exposure(session, key)
        health = {
            "srm_p_value": srm,
            "srm_mismatch": srm < SRM_THRESHOLD,
            "rejected": rejected,
            "bots_rejected": rejected.get("bot", 0),
            "multiple_exposure_rate": multiple / sessions if sessions else 0.0,
            "min_units_per_arm": MIN_UNITS,
            "enough_data": min(exposed) >= MIN_UNITS,
        }
        answer.append({"experiment_key": key, "variants": variants, "health": health})
    return answer
