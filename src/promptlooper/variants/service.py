"""Agents and variants: CRUD, clone, activation and resolution. The caller commits.

Every effective change of an agent's base config or of a variant's overrides appends an
immutable revision; an update that changes nothing writes nothing. Activation locks the agent
row (on PostgreSQL) so concurrent activations queue up, and the partial unique index in the
schema guarantees a single active variant whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.db.groups import first_per_group
from promptlooper.errors import Conflict, Invalid, NotFound
from promptlooper.online import service as online
from promptlooper.projects import service as projects
from promptlooper.variants.config import (
    base_config,
    changed,
    claim_slug,
    validate_fields,
)
from promptlooper.variants.models import ActivationEvent, Agent, Revision, Variant
from promptlooper.variants.resolver import Resolution, resolve


async def _flush(session: AsyncSession, what: str) -> None:
    try:
        await session.flush()
    except IntegrityError as exc:
        raise Conflict(f"{what} clashes with an existing name or slug") from exc


def _record(
    session: AsyncSession,
    principal: Principal,
    agent: Agent,
    variant: Variant | None,
    values: Mapping[str, Any],
    changed_fields: list[str],
) -> None:
    session.add(
        Revision(
            agent_id=agent.id,
            variant_id=variant.id if variant else None,
            number=(variant or agent).revision,
            values=dict(values),
            changed_fields=sorted(changed_fields),
            actor_id=_actor(principal),
        )
    )


def _actor(principal: Principal) -> uuid.UUID | None:
    return None if principal.method == "local" else principal.user_id


# --- agents -------------------------------------------------------------------------------


async def _agent_slug(
    session: AsyncSession, project_id: uuid.UUID, name: str, slug: str | None
) -> str:
    rows = (
        await session.execute(select(Agent.name, Agent.slug).where(Agent.project_id == project_id))
    ).all()
    return claim_slug(
        name, slug, {n for n, _ in rows}, {s for _, s in rows}, owner="project", kind="an agent"
    )


async def create_agent(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    *,
    name: str,
    fields: Mapping[str, Any],
    description: str = "",
    slug: str | None = None,
) -> Agent:
    await projects.get_project(session, principal, project_id)
    config = base_config(fields)
    agent = Agent(
        project_id=project_id,
        name=name,
        slug=await _agent_slug(session, project_id, name, slug),
        description=description,
        config=config,
        revision=1,
    )
    session.add(agent)
    await _flush(session, "The agent")
    _record(
        session, principal, agent, None, config, [k for k, v in config.items() if v is not None]
    )
    await session.flush()
    return agent


async def get_agent(session: AsyncSession, principal: Principal, agent_id: uuid.UUID) -> Agent:
    agent = await session.get(Agent, agent_id)
    if agent is None:
        raise NotFound("Agent not found")
    await projects.get_project(session, principal, agent.project_id)
    return agent


async def get_agent_by_slug(
    session: AsyncSession, principal: Principal, project_id: uuid.UUID, slug: str
) -> Agent:
    await projects.get_project(session, principal, project_id)
    agent = await session.scalar(
        select(Agent).where(Agent.project_id == project_id, Agent.slug == slug)
    )
    if agent is None:
        hint = await _lowercase_hint(session, project_id, slug)
        raise NotFound(f"No agent with slug {slug!r} in this project{hint}")
    return agent


async def _lowercase_hint(session: AsyncSession, project_id: uuid.UUID, slug: str) -> str:
    """A slug typed as the agent's name is capitalised (``Ans`` for ``ans``): slugs are
    lowercase, so say which one was meant, when it exists. Looked up only for a slug with
    capitals, which no agent can have."""
    lowered = slug.lower()
    if lowered == slug:
        return ""
    found = await session.scalar(
        select(Agent.slug).where(Agent.project_id == project_id, Agent.slug == lowered)
    )
    return f"; slugs are lowercase: did you mean {lowered!r}?" if found else ""


async def list_agents(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    *,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Agent], int]:
    await projects.get_project(session, principal, project_id)
    query = select(Agent).where(Agent.project_id == project_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(Agent.name).limit(limit).offset(offset)
    return list(await session.scalars(page)), total or 0


async def agents_in(
    session: AsyncSession, project_ids: list[uuid.UUID], *, per_project: int
) -> tuple[dict[uuid.UUID, list[Agent]], dict[uuid.UUID, int]]:
    """The first ``per_project`` agents of each project by name and each project's count, in
    one query, for a caller that has already found the projects and the right to read them."""
    return await first_per_group(
        session, Agent, Agent.project_id, project_ids, (Agent.name, Agent.id), per_project
    )


async def update_agent(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    *,
    fields: Mapping[str, Any],
    name: str | None = None,
    description: str | None = None,
) -> Agent:
    """Change only what differs; a config change bumps the revision and records it."""
    agent = await get_agent(session, principal, agent_id)
    if name is not None and name != agent.name:
        clash = await session.scalar(
            select(Agent.id).where(Agent.project_id == agent.project_id, Agent.name == name)
        )
        if clash is not None:
            raise Conflict(f"This project already has an agent named {name!r}")
        agent.name = name
    if description is not None and description != agent.description:
        agent.description = description
    diff = changed(agent.config, validate_fields(fields))
    if diff:
        agent.config = base_config({**agent.config, **diff})
        agent.revision += 1
        _record(session, principal, agent, None, agent.config, list(diff))
    await _flush(session, "The agent")
    return agent


async def delete_agent(session: AsyncSession, principal: Principal, agent_id: uuid.UUID) -> None:
    agent = await get_agent(session, principal, agent_id)
    ids = await session.scalars(select(Variant.id).where(Variant.agent_id == agent.id))
    await online.refuse_unlinking(session, set(ids), f"A variant of agent {agent.slug!r}")
    await session.delete(agent)
    await session.flush()


async def refuse_linked_agents(session: AsyncSession, project_id: uuid.UUID) -> None:
    """A project guard: no deleting a project while an online experiment serves one of its
    agents' variants."""
    ids = await session.scalars(
        select(Variant.id)
        .join(Agent, Variant.agent_id == Agent.id)
        .where(Agent.project_id == project_id)
    )
    await online.refuse_unlinking(session, set(ids), "A variant of the project's agents")


# --- variants -----------------------------------------------------------------------------


async def existing_variant_ids(session: AsyncSession, ids: Collection[uuid.UUID]) -> set[uuid.UUID]:
    """Which of ``ids`` are variants (of any agent): what an online experiment's arms may link."""
    return set(await session.scalars(select(Variant.id).where(Variant.id.in_(set(ids)))))


async def active_variant(session: AsyncSession, agent_id: uuid.UUID) -> Variant | None:
    return await session.scalar(
        select(Variant)
        .where(Variant.agent_id == agent_id, Variant.is_active)
        .execution_options(populate_existing=True)
    )


async def active_variants(
    session: AsyncSession, agent_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, Variant]:
    """The active variant of each of ``agent_ids`` that has one, in one query: a list of
    agents shows what each serves without a query per agent."""
    if not agent_ids:
        return {}
    query = select(Variant).where(Variant.agent_id.in_(set(agent_ids)), Variant.is_active)
    return {v.agent_id: v for v in await session.scalars(query)}


async def choose_variants(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, refs: Collection[str]
) -> tuple[Agent, list[Variant], list[Variant]]:
    """The agent, all its variants, and those ``refs`` name by id or slug (all when none):
    what a comparison shows. An unknown ref is ``NotFound``."""
    agent = await get_agent(session, principal, agent_id)
    every = await list_variants(session, principal, agent_id)
    by_key = {str(v.id): v for v in every} | {v.slug: v for v in every}
    wanted = list(dict.fromkeys(refs))
    missing = [w for w in wanted if w not in by_key]
    if missing:
        raise NotFound(f"No variant {missing[0]!r} for this agent")
    return agent, every, [by_key[w] for w in wanted] or every


def _version(item: Agent | Variant, values: Mapping[str, Any]) -> str:
    """A tag of everything an edit form shows: names as well as config values (a rename does
    not bump the revision), so a form loaded before any change is recognised."""
    material = json.dumps(
        [item.revision, item.name, item.description, values], sort_keys=True, default=str
    )
    return hashlib.sha256(material.encode()).hexdigest()[:16]


def variant_version(variant: Variant) -> str:
    return _version(variant, variant.overrides)


def agent_version(agent: Agent) -> str:
    return _version(agent, agent.config)


def check_version(variant: Variant, expected: str) -> None:
    """Refuse an edit made on an older view of the variant (what If-Match does in HTTP)."""
    if expected != variant_version(variant):
        raise Conflict(
            f"Variant {variant.slug!r} changed since this form was loaded; nothing was saved. "
            "Reload the form to see the current values."
        )


def check_agent_version(agent: Agent, expected: str) -> None:
    """Refuse an edit of the base config made on an older view of the agent."""
    if expected != agent_version(agent):
        raise Conflict(
            f"Agent {agent.slug!r} changed since this form was loaded; nothing was saved. "
            "Reload the form to see the current values."
        )


async def list_variants(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID
) -> list[Variant]:
    await get_agent(session, principal, agent_id)
    query = select(Variant).where(Variant.agent_id == agent_id).order_by(Variant.created_at)
    return list(await session.scalars(query))


async def get_variant(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, variant_id: uuid.UUID
) -> tuple[Agent, Variant]:
    agent = await get_agent(session, principal, agent_id)
    variant = await session.get(Variant, variant_id)
    if variant is None or variant.agent_id != agent.id:
        raise NotFound("Variant not found for this agent")
    return agent, variant


async def find_variant(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, ref: str
) -> Variant:
    """A variant of the agent by id or by slug (what a person types)."""
    try:
        variant_id = uuid.UUID(ref)
    except ValueError:
        variant_id = None
    if variant_id is not None:
        return (await get_variant(session, principal, agent_id, variant_id))[1]
    await get_agent(session, principal, agent_id)
    variant = await session.scalar(
        select(Variant).where(Variant.agent_id == agent_id, Variant.slug == ref)
    )
    if variant is None:
        raise NotFound(f"No variant {ref!r} for this agent")
    return variant


async def _variant_slug(
    session: AsyncSession, agent_id: uuid.UUID, name: str, slug: str | None
) -> str:
    rows = (
        await session.execute(
            select(Variant.name, Variant.slug).where(Variant.agent_id == agent_id)
        )
    ).all()
    return claim_slug(
        name, slug, {n for n, _ in rows}, {s for _, s in rows}, owner="agent", kind="a variant"
    )


async def create_variant(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    *,
    name: str,
    overrides: Mapping[str, Any],
    description: str = "",
    slug: str | None = None,
    origin: dict[str, Any] | None = None,
) -> Variant:
    """A variant overriding exactly ``overrides``; every other field follows the agent."""
    agent = await get_agent(session, principal, agent_id)
    values = validate_fields(overrides)
    for field in ("model_provider", "model_name"):
        if field in values and not values[field]:
            raise Invalid(f"{field}: a variant cannot clear the agent's {field.replace('_', ' ')}")
    variant = Variant(
        agent_id=agent.id,
        name=name,
        slug=await _variant_slug(session, agent.id, name, slug),
        description=description,
        overrides=values,
        is_active=False,
        origin=origin,
        revision=1,
    )
    session.add(variant)
    await _flush(session, "The variant")
    _record(session, principal, agent, variant, values, list(values))
    await session.flush()
    return variant


async def clone_variant(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    source_variant_id: uuid.UUID | None,
    *,
    name: str,
    overrides: Mapping[str, Any],
    description: str = "",
    slug: str | None = None,
) -> Variant:
    """A new variant from the agent's base (no source) or from another variant of the same
    agent: the given overrides win, every other field keeps the source's value."""
    base: dict[str, Any] = {}
    if source_variant_id is not None:
        _, source = await get_variant(session, principal, agent_id, source_variant_id)
        base = dict(source.overrides)
    return await create_variant(
        session,
        principal,
        agent_id,
        name=name,
        overrides={**base, **overrides},
        description=description,
        slug=slug,
        origin={"cloned_from": str(source_variant_id) if source_variant_id else "agent"},
    )


async def update_variant(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    *,
    fields: Mapping[str, Any],
    inherit: list[str] = (),  # type: ignore[assignment]
    name: str | None = None,
    description: str | None = None,
) -> Variant:
    """Override ``fields``, stop overriding ``inherit``; writes nothing when nothing changes."""
    agent, variant = await get_variant(session, principal, agent_id, variant_id)
    both = set(fields) & set(inherit)
    if both:
        raise Invalid(f"{sorted(both)[0]}: cannot both set and inherit a field")
    if name is not None and name != variant.name:
        clash = await session.scalar(
            select(Variant.id).where(Variant.agent_id == agent.id, Variant.name == name)
        )
        if clash is not None:
            raise Conflict(f"This agent already has a variant named {name!r}")
        variant.name = name
    if description is not None and description != variant.description:
        variant.description = description
    values = validate_fields(fields)
    proposed = {k: v for k, v in {**variant.overrides, **values}.items() if k not in inherit}
    diff = set(changed(variant.overrides, proposed)) | (set(variant.overrides) - set(proposed))
    if diff:
        variant.overrides = proposed
        variant.revision += 1
        _record(session, principal, agent, variant, proposed, list(diff))
    await _flush(session, "The variant")
    return variant


async def delete_variant(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, variant_id: uuid.UUID
) -> None:
    """Delete a variant; the active one is deactivated first (and that is recorded)."""
    agent, variant = await get_variant(session, principal, agent_id, variant_id)
    await online.refuse_unlinking(session, {variant.id}, f"Variant {variant.slug!r}")
    if variant.is_active:
        await deactivate(session, principal, agent.id, reason=f"variant {variant.slug} deleted")
    await session.delete(variant)
    await session.flush()


async def rollback(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, revision_id: uuid.UUID
) -> tuple[Agent, Variant | None]:
    """Re-apply an old revision of the agent's base or of one variant as a new revision.

    History is never rewritten: rolling back appends a revision whose values are the old
    one's, and rolling back to what is already current writes nothing.
    """
    agent = await get_agent(session, principal, agent_id)
    revision = await session.get(Revision, revision_id)
    if revision is None or revision.agent_id != agent.id:
        raise NotFound("Revision not found for this agent")
    if revision.variant_id is None:
        return await update_agent(session, principal, agent.id, fields=revision.values), None
    _, variant = await get_variant(session, principal, agent.id, revision.variant_id)
    dropped = [field for field in variant.overrides if field not in revision.values]
    variant = await update_variant(
        session, principal, agent.id, variant.id, fields=revision.values, inherit=dropped
    )
    return agent, variant


# --- activation and resolution ------------------------------------------------------------


async def _locked_agent(session: AsyncSession, principal: Principal, agent_id: uuid.UUID) -> Agent:
    """The agent, locked until commit so activations of one agent run one at a time.

    A no-op UPDATE rather than SELECT ... FOR UPDATE: it row-locks on PostgreSQL and takes
    the write lock on SQLite, where reads alone would let two activations see the same state.
    """
    agent = await get_agent(session, principal, agent_id)
    await session.execute(
        update(Agent).where(Agent.id == agent.id).values(revision=Agent.revision),
        execution_options={"synchronize_session": False},
    )
    return agent


async def activate(
    session: AsyncSession,
    principal: Principal,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    *,
    reason: str = "",
) -> Variant:
    agent = await _locked_agent(session, principal, agent_id)
    _, variant = await get_variant(session, principal, agent.id, variant_id)
    current = await active_variant(session, agent.id)
    if current is not None and current.id == variant.id:
        return variant
    if current is not None:
        current.is_active = False
        await session.flush()  # before the new one goes active: the index allows only one
    variant.is_active = True
    session.add(
        ActivationEvent(
            agent_id=agent.id,
            from_variant_id=current.id if current else None,
            to_variant_id=variant.id,
            actor_id=_actor(principal),
            reason=reason,
        )
    )
    await session.flush()
    return variant


async def deactivate(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID, *, reason: str = ""
) -> Variant | None:
    """Serve the agent's base config again; returns the variant that was active, if any."""
    agent = await _locked_agent(session, principal, agent_id)
    current = await active_variant(session, agent.id)
    if current is None:
        return None
    current.is_active = False
    session.add(
        ActivationEvent(
            agent_id=agent.id,
            from_variant_id=current.id,
            to_variant_id=None,
            actor_id=_actor(principal),
            reason=reason,
        )
    )
    await session.flush()
    return current


async def resolution(session: AsyncSession, agent: Agent, unit_id: str | None = None) -> Resolution:
    """What the agent serves: the active variant over the base config; for a ``unit_id``,
    the variant its arm links to when an online experiment runs on this agent's variants
    (an arm with no link serves what the agent serves anyway)."""
    active = await active_variant(session, agent.id)
    if unit_id is None:
        return resolve(agent, active)
    ids = set(await session.scalars(select(Variant.id).where(Variant.agent_id == agent.id)))
    arm = await online.arm_for(session, ids, unit_id)
    if arm is None:
        return resolve(agent, active)
    chosen = await session.get(Variant, arm.agent_variant_id) if arm.agent_variant_id else active
    assigned = {"experiment_key": arm.experiment_key, "variant_key": arm.variant_key}
    return resolve(agent, chosen, assigned)


async def effective_config(session: AsyncSession, agent: Agent, variant: Variant) -> dict[str, Any]:
    return resolve(agent, variant).config


async def list_revisions(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID
) -> list[Revision]:
    await get_agent(session, principal, agent_id)
    query = (
        select(Revision)
        .where(Revision.agent_id == agent_id)
        .order_by(Revision.created_at, Revision.number)
    )
    return list(await session.scalars(query))


async def list_activations(
    session: AsyncSession, principal: Principal, agent_id: uuid.UUID
) -> list[ActivationEvent]:
    await get_agent(session, principal, agent_id)
    query = (
        select(ActivationEvent)
        .where(ActivationEvent.agent_id == agent_id)
        .order_by(ActivationEvent.created_at)
    )
    return list(await session.scalars(query))
