"""The online-experiment registry, site settings, assignment and results. The caller commits.

Online experiments belong to the site, not to a project: admins manage them, anonymous
browsers are assigned and send events. The global switch in the site settings turns the whole
feature off (an empty public list, ingestion that accepts nothing, and an admin list that
answers 404), as the seed specifies.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.errors import Conflict, FieldInvalid, NotFound
from promptlooper.online import assignment, checks, definitions, sticky, tallies, traffic
from promptlooper.online.models import OnlineExperiment, SiteSettings, VariantTotals
from promptlooper.online.schemas import (
    READ_ONLY,
    ExperimentCreate,
    ExperimentDefinition,
    ExperimentPublic,
    ExperimentUpdate,
    SettingsBody,
)

DISABLED = "Online experiments are disabled in the site settings"

KnownVariants = Callable[[AsyncSession, Collection[uuid.UUID]], Awaitable[set[uuid.UUID]]]
"""Which of the given agent variant ids exist. Agent variants belong to a domain that builds
on this one, so whoever creates or replaces an experiment passes this lookup in."""


# --- site settings --------------------------------------------------------------------------


async def site_settings(session: AsyncSession) -> SiteSettings:
    """The settings row; defaults (experiments on) until an admin saves some."""
    found = await session.scalar(select(SiteSettings).order_by(SiteSettings.id).limit(1))
    return found or SiteSettings(id=1, site_name="", experiments_enabled=True)


async def save_settings(session: AsyncSession, body: SettingsBody) -> SiteSettings:
    """Change the settings ``body`` names and keep the others: flipping the switch must not
    reset the site's name."""
    current = await session.scalar(select(SiteSettings).order_by(SiteSettings.id).limit(1))
    if current is None:
        current = await site_settings(session)
        session.add(current)
    for field, value in body.model_dump(exclude_unset=True).items():
        setattr(current, field, value)
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
    experiment.secondary_metrics = list(body.secondary_metrics)
    experiment.guardrail_metrics = list(body.guardrail_metrics)
    experiment.variants = [v.model_dump(mode="json") for v in body.variants]
    experiment.type = body.type
    experiment.auto_stop = body.auto_stop
    experiment.guardrail_thresholds = {
        name: rule.model_dump() for name, rule in body.guardrail_thresholds.items()
    }
    experiment.bandit = body.bandit.model_dump() if body.bandit else None


async def _check_links(
    session: AsyncSession, body: ExperimentDefinition, known: KnownVariants
) -> None:
    """An arm may only link an agent variant that exists: a dangling link would serve the
    arm's units the agent's default instead, silently."""
    links = [v.agent_variant_id for v in body.variants if v.agent_variant_id is not None]
    if not links:
        return
    found = await known(session, links)
    for variant in body.variants:
        if (link := variant.agent_variant_id) is not None and link not in found:
            index = body.sent_index(variant.variant_key)
            raise FieldInvalid(f"variants.{index}.agent_variant_id", f"no agent variant {link}")


async def _check_cookie(session: AsyncSession, key: str, cookie_name: str) -> None:
    """A cookie names one experiment's assignment. Archived experiments count: browsers keep
    their cookies for 90 days, and a new experiment reading one would inherit old arms."""
    holder = await session.scalar(
        select(OnlineExperiment.experiment_key).where(
            OnlineExperiment.cookie_name == cookie_name, OnlineExperiment.experiment_key != key
        )
    )
    if holder is not None:
        raise Conflict(f"cookie_name {cookie_name!r} is already used by experiment {holder!r}")


async def create_experiment(
    session: AsyncSession, body: ExperimentCreate, known: KnownVariants
) -> OnlineExperiment:
    await _check_links(session, body, known)
    await definitions.check_names(session, body)
    await checks.check(session, body)
    await _check_cookie(session, body.experiment_key, body.cookie_name)
    experiment = OnlineExperiment(experiment_key=body.experiment_key, stopped_arms={}, weights=None)
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


async def lock_experiment(session: AsyncSession, key: str) -> OnlineExperiment:
    """The experiment as it is now, to be changed: its row stays locked until the caller's
    transaction ends (``FOR UPDATE`` on PostgreSQL; SQLite's writers already queue for its one
    write lock when they begin). Every writer of the row reads it this way: an admin's edit
    and the server's upkeep (in this process or another) then take turns, and neither writes
    what it decided from a state the other has since changed, such as weights computed for
    arms an edit has changed, or a stop an edit's older copy of the stopped arms would undo.
    The row is read afresh even when the session holds it already."""
    experiment = await session.scalar(
        select(OnlineExperiment)
        .where(OnlineExperiment.experiment_key == key)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if experiment is None:
        raise NotFound(f"No online experiment with key {key!r}")
    return experiment


def _check_read_only(experiment: OnlineExperiment, body: ExperimentUpdate) -> None:
    for field in READ_ONLY:
        if field in body.model_fields_set and getattr(body, field) != getattr(experiment, field):
            raise FieldInvalid(field, "read-only, and differs from the experiment's; leave it out")


async def update_experiment(
    session: AsyncSession, key: str, body: ExperimentUpdate, known: KnownVariants
) -> OnlineExperiment:
    """Replace the definition. The hash seed stays unless the body changes it: keeping the
    seed keeps every unit in its variant, changing it re-randomises on purpose."""
    experiment = await lock_experiment(session, key)
    _check_read_only(experiment, body)
    _refuse_reviving(experiment, body.status)
    keep_type(experiment, body)
    await _check_arms(session, experiment, body)
    await _check_links(session, body, known)
    await definitions.check_names(session, body)
    await checks.check(session, body)
    await _check_cookie(session, key, body.cookie_name)
    seed = experiment.hash_seed
    allocations = [(v["variant_key"], v["allocation"]) for v in experiment.variants]
    floor = (experiment.bandit or {}).get("floor")
    _apply(experiment, key, body)
    if body.hash_seed is None:
        experiment.hash_seed = seed
    if body.type != "bandit" or allocations != [
        (v.variant_key, v.allocation) for v in body.variants
    ]:
        # New allocations are new starting weights; an A/B test has none of its own.
        experiment.weights = None
    elif experiment.weights is not None and body.bandit and floor != body.bandit.floor:
        experiment.weights = traffic.refloor(experiment.weights, floor or 0.0, body.bandit.floor)
    keys = {v.variant_key for v in body.variants}
    if not set(experiment.stopped_arms) <= keys:
        experiment.stopped_arms = {k: v for k, v in experiment.stopped_arms.items() if k in keys}
    await session.flush()
    return experiment


def assignment_changes(experiment: OnlineExperiment, body: ExperimentDefinition) -> list[str]:
    """What replacing the definition with ``body`` does to who sees which variant, in words;
    empty when every unit keeps its place. Assignment hashes the unit with the seed and cuts
    the result by the allocations scaled by coverage, so any of those moves units."""
    changes = []
    if body.hash_seed is not None and body.hash_seed != experiment.hash_seed:
        changes.append("the hash seed changes: every unit is assigned again, at random")
    before = {v["variant_key"]: v["allocation"] for v in experiment.variants}
    after = {v.variant_key: v.allocation for v in body.variants}
    if before != after:
        changes.append(
            "the allocations change: units near the new boundaries move to another variant"
        )
    if body.coverage != experiment.coverage:
        changes.append(
            f"coverage changes from {experiment.coverage:g} % to {body.coverage:g} %: "
            "units enter or leave the experiment"
        )
    if list(body.eligible_routes) != list(experiment.eligible_routes):
        changes.append("the eligible routes change: other pages assign units")
    if not body.enabled and experiment.enabled:
        changes.append("it is disabled: no unit is assigned and events are refused")
    return changes


UPKEEP_STATE = frozenset({"stopped_arms", "weights"})
"""What the server's upkeep changes on its own, which an edit keeps as it finds it."""


def experiment_version(experiment: OnlineExperiment) -> str:
    """A tag of the whole definition an edit form shows, status and archiving included: a
    form loaded before anyone else's change (an edit, a start or stop) is recognised. The
    upkeep's stops and weights are left out: a bandit's weights may move every minute, and a
    form that could only be saved between two updates could not be saved at all."""
    shown = ExperimentPublic.model_validate(experiment).model_dump(
        mode="json", exclude=UPKEEP_STATE
    )
    material = json.dumps([shown, str(experiment.archived_at)], sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def check_version(experiment: OnlineExperiment, expected: str) -> None:
    """Refuse an edit made on an older view of the experiment (what If-Match does in HTTP),
    so two admins editing at once do not silently overwrite each other."""
    if expected != experiment_version(experiment):
        raise Conflict(
            f"Experiment {experiment.experiment_key!r} changed since this form was loaded; "
            "nothing was saved. Reload the form to see the current values."
        )


def keep_type(experiment: OnlineExperiment, body: ExperimentDefinition) -> None:
    """An experiment that has assigned units keeps its type, and a bandit the weights it
    learned. An A/B test turned bandit would place its earlier units (never stored: its hash
    placed them) by weights that move, so they would change arm while their earlier events stay
    under the old one; a bandit turned A/B test would hash its units again, moving those its
    weights placed (they are stuck to their arm only while it is a bandit); and new
    allocations would silently throw the learned weights away. Each is a 409; a new experiment
    is the way to start over. Public so the edit form refuses before asking to confirm."""
    if experiment.status == "draft":
        return
    key = experiment.experiment_key
    if experiment.type != "bandit":
        if body.type == "bandit":
            raise Conflict(
                f"type: {key!r} is an A/B test that has assigned units; as a bandit it would "
                "move them to other arms once its weights change, while their earlier events "
                "stay under the arm they had. Create a new experiment instead"
            )
        return
    if body.type != "bandit":
        raise Conflict(
            f"type: {key!r} is a bandit that has assigned units; as an A/B test it would move "
            "the units its weights placed to other arms. Create a new experiment instead"
        )
    before = {v["variant_key"]: v["allocation"] for v in experiment.variants}
    after = {v.variant_key: v.allocation for v in body.variants}
    if experiment.weights is not None and before.keys() == after.keys() and before != after:
        index = next(
            body.sent_index(v.variant_key)
            for v in body.variants
            if before[v.variant_key] != v.allocation
        )
        raise Conflict(
            f"variants.{index}.allocation: {key!r} is a bandit with learned weights; new "
            "allocations (its starting weights) would throw them away. Leave them as they are"
        )


def _refuse_reviving(experiment: OnlineExperiment, status: str) -> None:
    """An archived experiment stays stopped, and one that has started never becomes a draft
    again: a draft promises that no unit was ever assigned."""
    if experiment.archived_at is not None and status == "running":
        raise Conflict(
            f"{experiment.experiment_key!r} is archived; create a new experiment instead"
        )
    if status == "draft" and experiment.status != "draft":
        raise Conflict(
            f"status: {experiment.experiment_key!r} has been {experiment.status} and cannot "
            "go back to draft; stop it instead"
        )


async def _check_arms(
    session: AsyncSession, experiment: OnlineExperiment, body: ExperimentDefinition
) -> None:
    """Arms keep their keys once an experiment runs or has data: events and results are
    filed by variant key, so a renamed arm would hide what its units did, and browsers
    holding the old key in their cookie would have every event refused."""
    before = [v["variant_key"] for v in experiment.variants]
    after = [v.variant_key for v in body.variants]
    if set(before) == set(after):
        return
    if experiment.status == "running":
        why = "it is running"
    elif await session.scalar(
        select(VariantTotals.variant_key)
        .where(VariantTotals.experiment_key == experiment.experiment_key)
        .limit(1)
    ):
        why = "it has recorded events"
    else:
        return
    raise Conflict(
        f"variants: the arms' keys cannot change because {why} (now {', '.join(before)}); "
        "change allocations and labels only, or create a new experiment"
    )


async def set_status(session: AsyncSession, key: str, status: str) -> OnlineExperiment:
    """Start (``running``) or stop (``stopped``) an experiment without touching the rest."""
    experiment = await lock_experiment(session, key)
    _refuse_reviving(experiment, status)
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
    experiment = await lock_experiment(session, key)
    if experiment.archived_at is None:
        experiment.archived_at = datetime.now(UTC)
        experiment.status = "stopped"
        await session.flush()
    return experiment


async def refuse_unlinking(
    session: AsyncSession, variant_ids: Collection[uuid.UUID], what: str
) -> None:
    """Refuse (409) to delete agent variants an experiment's arm serves. Archived experiments
    do not count: they can never serve again; a stopped one can be started again, and its
    arm would then serve the agent's default in place of the deleted variant."""
    wanted = {str(i) for i in variant_ids}
    for experiment in await list_experiments(session):
        arm = next((v for v in experiment.variants if v.get("agent_variant_id") in wanted), None)
        if arm is not None:
            raise Conflict(
                f"{what} is served by arm {arm['variant_key']!r} of online experiment "
                f"{experiment.experiment_key!r}; archive the experiment or unlink the arm first"
            )


async def public_experiments(session: AsyncSession) -> list[OnlineExperiment]:
    if not await experiments_enabled(session):
        return []
    return await list_experiments(session)


def is_live(experiment: OnlineExperiment) -> bool:
    """Whether it assigns units and accepts events now."""
    return experiment.enabled and experiment.status == "running" and experiment.archived_at is None


def _hashed(experiment: OnlineExperiment) -> Callable[[str], str | None]:
    """Unit id → the arm an A/B test's hash puts it in (None: outside the coverage), for many
    units: the experiment's side (ranges, seed, keys) is worked out once."""
    assign = assignment.assigner(
        experiment.hash_seed, [v["allocation"] for v in experiment.variants], experiment.coverage
    )
    keys = [v["variant_key"] for v in experiment.variants]

    def arm(unit_id: str) -> str | None:
        index = assign(unit_id)
        return None if index is None else keys[index]

    return arm


async def assigned_variants(
    session: AsyncSession,
    experiment: OnlineExperiment,
    unit_ids: Collection[str],
    *,
    store: bool = True,
) -> dict[str, str]:
    """Unit id → the arm it is assigned (units outside the experiment left out), whether or
    not a guardrail stopped that arm: an A/B test's by hashing, a bandit's from its sticky
    assignments (``sticky.py``; with ``store=False``, on a path that only reads, a new unit's
    arm is not stored yet). The results count a unit in this arm (intent to treat)."""
    if experiment.type == "bandit":
        return await sticky.arms(session, experiment, unit_ids, store=store)
    arm = _hashed(experiment)
    found = {unit: arm(unit) for unit in unit_ids}
    return {unit: variant for unit, variant in found.items() if variant is not None}


async def served_variants(
    session: AsyncSession,
    experiment: OnlineExperiment,
    unit_ids: Collection[str],
    *,
    store: bool = True,
) -> dict[str, str]:
    """Unit id → the variant it is served: its assigned arm, or the control while a
    guardrail has stopped that arm; nothing when the experiment is not live."""
    if not is_live(experiment):
        return {}
    assigned = await assigned_variants(session, experiment, unit_ids, store=store)
    return {unit: traffic.served(experiment, arm) or arm for unit, arm in assigned.items()}


async def assign_unit(
    session: AsyncSession, key: str, unit_id: str, path: str | None = None
) -> str | None:
    experiment = await get_experiment(session, key)
    if not await experiments_enabled(session):
        return None
    if path is not None and not assignment.route_matches(path, experiment.eligible_routes):
        return None
    return (await served_variants(session, experiment, [unit_id])).get(unit_id)


@dataclass(frozen=True, slots=True)
class Arm:
    """Where a unit landed in an online experiment that serves agent variants."""

    experiment_key: str
    variant_key: str
    agent_variant_id: uuid.UUID | None


async def arm_for(
    session: AsyncSession, agent_variant_ids: set[uuid.UUID], unit_id: str
) -> Arm | None:
    """The arm that serves the unit in the oldest live experiment that links any of
    ``agent_variant_ids`` (the control while a guardrail has stopped its own); None when no
    such experiment runs or the unit is outside it. Resolution only reads: a bandit's new unit
    gets its arm stored by its first performance record (or assignment)."""
    linked = await _linked(session, agent_variant_ids)
    if linked is None:
        return None
    experiment, arms = linked
    served = await served_variants(session, experiment, [unit_id], store=False)
    return arms[served[unit_id]] if unit_id in served else None


async def arms_for(
    session: AsyncSession, agent_variant_ids: set[uuid.UUID], unit_ids: Collection[str]
) -> dict[str, Arm]:
    """Per unit, the arm its performance records are filed under in that experiment (the
    units outside it left out): the arm it is assigned, even while a guardrail has it served
    the control, so a unit counts in one arm only. One registry read for a batch of records,
    whose transaction stores a bandit's new units' arms."""
    linked = await _linked(session, agent_variant_ids)
    if linked is None or not unit_ids:
        return {}
    experiment, arms = linked
    assigned = await assigned_variants(session, experiment, unit_ids)
    return {unit_id: arms[key] for unit_id, key in assigned.items()}


async def _linked(
    session: AsyncSession, agent_variant_ids: set[uuid.UUID]
) -> tuple[OnlineExperiment, dict[str, Arm]] | None:
    """The oldest live experiment with an arm linking any of ``agent_variant_ids``, and its
    arms by variant key."""
    if not agent_variant_ids or not await experiments_enabled(session):
        return None
    wanted = {str(i) for i in agent_variant_ids}
    for experiment in await list_experiments(session):
        linked = {v.get("agent_variant_id") for v in experiment.variants}
        if not is_live(experiment) or not linked & wanted:
            continue
        arms = {
            v["variant_key"]: Arm(
                experiment.experiment_key,
                v["variant_key"],
                uuid.UUID(link) if (link := v.get("agent_variant_id")) in wanted else None,
            )
            for v in experiment.variants
        }
        return experiment, arms
    return None


async def record_calls(session: AsyncSession, calls: Sequence[dict[str, Any]]) -> None:
    """Count served calls toward their arms' performance metrics (``tallies.record_calls``):
    the agent performance log's way in."""
    if calls:
        await tallies.record_calls(session, calls, await definitions.cross_ratios(session))
