"""The online-experiment registry, site settings, assignment and results. The caller commits.

Online experiments belong to the site, not to a project: admins manage them, anonymous
browsers are assigned and send events. The global switch in the site settings turns the whole
feature off (an empty public list, ingestion that accepts nothing, and an admin list that
answers 404), as the seed specifies.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.errors import Conflict, NotFound
from promptlooper.online import assignment, stats
from promptlooper.online.models import ExperimentEvent, OnlineExperiment, Rejection, SiteSettings
from promptlooper.online.schemas import ExperimentCreate, ExperimentDefinition, SettingsBody

DISABLED = "Online experiments are disabled in the site settings"


# --- site settings --------------------------------------------------------------------------


async def site_settings(session: AsyncSession) -> SiteSettings:
    """The settings row; defaults (experiments on) until an admin saves some."""
    found = await session.scalar(select(SiteSettings).order_by(SiteSettings.id).limit(1))
    return found or SiteSettings(id=1, site_name="", experiments_enabled=True)


async def save_settings(session: AsyncSession, body: SettingsBody) -> SiteSettings:
    current = await session.scalar(select(SiteSettings).order_by(SiteSettings.id).limit(1))
    if current is None:
        current = SiteSettings(id=1)
        session.add(current)
    current.site_name = body.site_name
    current.experiments_enabled = body.experiments_enabled
    await session.flush()
    return current


async def experiments_enabled(session: AsyncSession) -> bool:
    return (await site_settings(session)).experiments_enabled


async def require_enabled(session: AsyncSession) -> None:
    if not await experiments_enabled(session):
        raise NotFound(DISABLED)


# --- registry -------------------------------------------------------------------------------


def _apply(experiment: OnlineExperiment, key: str, body: ExperimentDefinition) -> None:
    experiment.name = body.name
    experiment.description = body.description
    experiment.cookie_name = body.cookie_name
    experiment.enabled = body.enabled
    experiment.status = body.status
    experiment.eligible_routes = list(body.eligible_routes)
    experiment.coverage = body.coverage
    experiment.hash_seed = body.hash_seed or key
    experiment.primary_metric = body.primary_metric
    experiment.guardrail_metrics = list(body.guardrail_metrics)
    experiment.variants = [v.model_dump(mode="json") for v in body.variants]


async def create_experiment(session: AsyncSession, body: ExperimentCreate) -> OnlineExperiment:
    experiment = OnlineExperiment(experiment_key=body.experiment_key)
    _apply(experiment, body.experiment_key, body)
    session.add(experiment)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"An experiment with key {body.experiment_key!r} exists") from exc
    return experiment


async def get_experiment(session: AsyncSession, key: str) -> OnlineExperiment:
    experiment = await session.scalar(
        select(OnlineExperiment).where(OnlineExperiment.experiment_key == key)
    )
    if experiment is None:
        raise NotFound(f"No online experiment with key {key!r}")
    return experiment


async def update_experiment(
    session: AsyncSession, key: str, body: ExperimentDefinition
) -> OnlineExperiment:
    """Replace the definition. The hash seed stays unless the body changes it: keeping the
    seed keeps every unit in its variant, changing it re-randomises on purpose."""
    experiment = await get_experiment(session, key)
    seed = experiment.hash_seed
    _apply(experiment, key, body)
    if body.hash_seed is None:
        experiment.hash_seed = seed
    await session.flush()
    return experiment


async def set_status(session: AsyncSession, key: str, status: str) -> OnlineExperiment:
    """Start (``running``) or stop (``stopped``) an experiment without touching the rest."""
    experiment = await get_experiment(session, key)
    if experiment.archived_at is not None and status == "running":
        raise Conflict(f"{key!r} is archived; create a new experiment instead")
    experiment.status = status
    await session.flush()
    return experiment


async def list_experiments(
    session: AsyncSession, *, include_archived: bool = False
) -> list[OnlineExperiment]:
    query = select(OnlineExperiment).order_by(OnlineExperiment.created_at)
    if not include_archived:
        query = query.where(OnlineExperiment.archived_at.is_(None))
    return list(await session.scalars(query))


async def archive_experiment(session: AsyncSession, key: str) -> OnlineExperiment:
    """Stop it and hide it from the public list; its events and results stay."""
    experiment = await get_experiment(session, key)
    if experiment.archived_at is None:
        experiment.archived_at = datetime.now(UTC)
        experiment.status = "stopped"
        await session.flush()
    return experiment


async def public_experiments(session: AsyncSession) -> list[OnlineExperiment]:
    if not await experiments_enabled(session):
        return []
    return await list_experiments(session)


def is_live(experiment: OnlineExperiment) -> bool:
    """Whether it assigns units and accepts events now."""
    return experiment.enabled and experiment.status == "running" and experiment.archived_at is None


def variant_for(experiment: OnlineExperiment, unit_id: str, path: str | None = None) -> str | None:
    """The unit's variant key, or None: not live, route not eligible, or outside coverage."""
    if not is_live(experiment):
        return None
    if path is not None and not assignment.route_matches(path, experiment.eligible_routes):
        return None
    allocations = [v["allocation"] for v in experiment.variants]
    index = assignment.assign(unit_id, experiment.hash_seed, allocations, experiment.coverage)
    return None if index is None else experiment.variants[index]["variant_key"]


async def assign_unit(
    session: AsyncSession, key: str, unit_id: str, path: str | None = None
) -> str | None:
    experiment = await get_experiment(session, key)
    if not await experiments_enabled(session):
        return None
    return variant_for(experiment, unit_id, path)


@dataclass(frozen=True, slots=True)
class Arm:
    """Where a unit landed in an online experiment that serves agent variants."""

    experiment_key: str
    variant_key: str
    agent_variant_id: uuid.UUID | None


async def arm_for(
    session: AsyncSession, agent_variant_ids: set[uuid.UUID], unit_id: str
) -> Arm | None:
    """The unit's arm in the oldest live experiment that links any of ``agent_variant_ids``;
    None when no such experiment runs or the unit is outside it."""
    if not agent_variant_ids or not await experiments_enabled(session):
        return None
    wanted = {str(i) for i in agent_variant_ids}
    for experiment in await list_experiments(session):
        linked = {v.get("agent_variant_id") for v in experiment.variants}
        if not is_live(experiment) or not linked & wanted:
            continue
        key = variant_for(experiment, unit_id)
        if key is None:
            return None
        arm = next(v for v in experiment.variants if v["variant_key"] == key)
        link = arm.get("agent_variant_id")
        return Arm(
            experiment.experiment_key,
            key,
            uuid.UUID(link) if link and link in wanted else None,
        )
    return None


# --- results --------------------------------------------------------------------------------

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


async def results(
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
