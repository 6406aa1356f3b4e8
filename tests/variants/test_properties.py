"""The seed's five properties, checked by Hypothesis against the real service and database.

Each example works on agents and variants of its own (fresh names), through the same service
functions the API uses, and reads the truth back from the database.
"""

from __future__ import annotations

import itertools
import re
import uuid
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from promptlooper.auth.principal import Principal
from promptlooper.variants import service
from promptlooper.variants.config import CONFIG_FIELDS, overlay, slugify
from promptlooper.variants.models import ActivationEvent, Variant

PROPERTY_SETTINGS = settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
TEXT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=1, max_size=40
)
PROMPT = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc"), exclude_characters="{"),
    min_size=1,
    max_size=40,
)
"""Text that is a template without tags: prompts must compile, and tags are not the point here."""

FIELD_VALUES: dict[str, st.SearchStrategy[Any]] = {
    "model_provider": st.sampled_from(["openai", "anthropic", "mock"]),
    "model_name": st.text("abcdefghij0123456789-", min_size=1, max_size=20),
    "system_prompt": PROMPT,
    "user_prompt_template": PROMPT,
    "prompt_version": st.text("v0123456789.", min_size=1, max_size=8),
    "temperature": st.floats(min_value=0, max_value=2, allow_nan=False),
    "max_tokens": st.integers(1, 100_000),
    "context_window": st.integers(1, 200_000),
    "input_token_limit": st.integers(1, 200_000),
    "token_budget": st.integers(1, 1_000_000),
    "timeout_seconds": st.integers(1, 600),
    "max_retries": st.integers(0, 10),
}
base_configs = st.fixed_dictionaries(
    {"model_provider": FIELD_VALUES["model_provider"], "model_name": FIELD_VALUES["model_name"]},
    optional={k: v for k, v in FIELD_VALUES.items() if k not in {"model_provider", "model_name"}},
)
override_sets = st.fixed_dictionaries({}, optional=FIELD_VALUES)


async def _principal(sessionmaker) -> tuple[Principal, uuid.UUID]:
    from promptlooper.projects import service as projects
    from tests.factories import make_user

    user = await make_user(sessionmaker, f"prop-{uuid.uuid4().hex[:10]}")
    principal = Principal(user.id, user.username, False, "api_key")
    async with sessionmaker() as session:
        project = await projects.create_project(session, principal, "props")
        await session.commit()
    return principal, project.id


async def _agent(sessionmaker, principal, project_id, config: dict) -> uuid.UUID:
    async with sessionmaker() as session:
        agent = await service.create_agent(
            session, principal, project_id, name=f"agent {uuid.uuid4().hex[:8]}", fields=config
        )
        await session.commit()
        return agent.id


async def _variant(sessionmaker, principal, agent_id, overrides: dict) -> uuid.UUID:
    async with sessionmaker() as session:
        variant = await service.create_variant(
            session, principal, agent_id, name=f"v {uuid.uuid4().hex[:8]}", overrides=overrides
        )
        await session.commit()
        return variant.id


@PROPERTY_SETTINGS
@given(
    n_variants=st.integers(1, 5),
    operations=st.lists(
        st.tuples(st.sampled_from(["activate", "deactivate"]), st.integers(0, 4)),
        min_size=1,
        max_size=12,
    ),
)
async def test_property_1_at_most_one_active_variant(sessionmaker, n_variants, operations):
    principal, project_id = await _principal(sessionmaker)
    agent_id = await _agent(
        sessionmaker, principal, project_id, {"model_provider": "mock", "model_name": "x"}
    )
    variants = [await _variant(sessionmaker, principal, agent_id, {}) for _ in range(n_variants)]
    expected: uuid.UUID | None = None
    for op, index in operations:
        async with sessionmaker() as session:
            if op == "activate":
                expected = variants[index % n_variants]
                await service.activate(session, principal, agent_id, expected)
            else:
                expected = None
                await service.deactivate(session, principal, agent_id)
            await session.commit()
        async with sessionmaker() as session:
            active = list(
                await session.scalars(
                    select(Variant.id).where(Variant.agent_id == agent_id, Variant.is_active)
                )
            )
            agent = await service.get_agent(session, principal, agent_id)
            resolved = await service.resolution(session, agent)
        assert len(active) <= 1
        assert active == ([expected] if expected else [])
        assert (resolved.variant.id if resolved.variant else None) == expected


@PROPERTY_SETTINGS
@given(base=base_configs, source_overrides=override_sets, clone_overrides=override_sets)
async def test_property_2_clone_keeps_every_field_it_does_not_override(
    sessionmaker, base, source_overrides, clone_overrides
):
    principal, project_id = await _principal(sessionmaker)
    agent_id = await _agent(sessionmaker, principal, project_id, base)
    source_id = await _variant(sessionmaker, principal, agent_id, source_overrides)
    async with sessionmaker() as session:
        agent = await service.get_agent(session, principal, agent_id)
        _, source = await service.get_variant(session, principal, agent_id, source_id)
        from_variant = await service.clone_variant(
            session,
            principal,
            agent_id,
            source_id,
            name=f"c {uuid.uuid4().hex[:8]}",
            overrides=clone_overrides,
        )
        from_agent = await service.clone_variant(
            session,
            principal,
            agent_id,
            None,
            name=f"a {uuid.uuid4().hex[:8]}",
            overrides=clone_overrides,
        )
        await session.commit()
        source_config = await service.effective_config(session, agent, source)
        variant_config = await service.effective_config(session, agent, from_variant)
        agent_clone_config = await service.effective_config(session, agent, from_agent)
    for field in CONFIG_FIELDS:
        if field in clone_overrides:
            assert variant_config[field] == clone_overrides[field]
            assert agent_clone_config[field] == clone_overrides[field]
        else:
            assert variant_config[field] == source_config[field]
            assert agent_clone_config[field] == agent.config[field]


@PROPERTY_SETTINGS
@given(
    base=base_configs,
    variant_overrides=st.lists(override_sets, min_size=1, max_size=4),
    active=st.one_of(st.none(), st.integers(0, 3)),
)
async def test_property_3_resolution_prefers_the_active_variant(
    sessionmaker, base, variant_overrides, active
):
    principal, project_id = await _principal(sessionmaker)
    agent_id = await _agent(sessionmaker, principal, project_id, base)
    ids = [await _variant(sessionmaker, principal, agent_id, o) for o in variant_overrides]
    chosen = None if active is None else active % len(ids)
    async with sessionmaker() as session:
        if chosen is not None:
            await service.activate(session, principal, agent_id, ids[chosen])
        await session.commit()
        agent = await service.get_agent(session, principal, agent_id)
        resolved = await service.resolution(session, agent)
    if chosen is None:
        assert resolved.source == "agent"
        assert resolved.config == agent.config
    else:
        assert resolved.source == "variant"
        assert resolved.variant is not None
        assert resolved.variant.id == ids[chosen]
        assert resolved.config == overlay(agent.config, variant_overrides[chosen])
        for field in CONFIG_FIELDS:
            expected = "variant" if field in variant_overrides[chosen] else None
            if expected:
                assert resolved.provenance[field] == "variant"


@PROPERTY_SETTINGS
@given(name=TEXT)
async def test_property_4_slugs_are_deterministic_kebab_case(sessionmaker, name):
    assert slugify(name) == slugify(name)
    assert KEBAB.match(slugify(name))
    if name.strip():
        principal, project_id = await _principal(sessionmaker)
        async with sessionmaker() as session:
            first = await service.create_agent(
                session,
                principal,
                project_id,
                name=name.strip(),
                fields={"model_provider": "mock", "model_name": "x"},
            )
            await session.commit()
        assert KEBAB.match(first.slug)
        assert first.slug == slugify(name.strip(), "agent")


@PROPERTY_SETTINGS
@given(base=base_configs, start=override_sets, update=override_sets)
async def test_property_5_partial_updates_are_idempotent(sessionmaker, base, start, update):
    principal, project_id = await _principal(sessionmaker)
    agent_id = await _agent(sessionmaker, principal, project_id, base)
    variant_id = await _variant(sessionmaker, principal, agent_id, start)
    states = []
    for _ in range(2):
        async with sessionmaker() as session:
            v = await service.update_variant(
                session, principal, agent_id, variant_id, fields=update
            )
            await session.commit()
            states.append((dict(v.overrides), v.revision))
    async with sessionmaker() as session:
        agent = await service.get_agent(session, principal, agent_id)
        a1 = await service.update_agent(session, principal, agent_id, fields=dict(agent.config))
        await session.commit()
    assert states[0] == states[1]
    assert states[0][0] == {**start, **update}
    assert states[0][1] == (2 if any(start.get(k, object()) != v for k, v in update.items()) else 1)
    assert a1.revision == 1


async def test_concurrent_activations_leave_exactly_one_active_and_the_log_agrees(
    sessionmaker, db_url
):
    import asyncio

    principal, project_id = await _principal(sessionmaker)
    agent_id = await _agent(
        sessionmaker, principal, project_id, {"model_provider": "mock", "model_name": "x"}
    )
    variants = [await _variant(sessionmaker, principal, agent_id, {}) for _ in range(6)]

    async def activate(variant_id: uuid.UUID) -> None:
        async with sessionmaker() as session:
            await service.activate(session, principal, agent_id, variant_id)
            await session.commit()

    await asyncio.gather(*(activate(v) for v in variants * 4))

    async with sessionmaker() as session:
        active = list(
            await session.scalars(
                select(Variant.id).where(Variant.agent_id == agent_id, Variant.is_active)
            )
        )
        events = list(
            await session.scalars(
                select(ActivationEvent)
                .where(ActivationEvent.agent_id == agent_id)
                .order_by(ActivationEvent.created_at)
            )
        )
        count = await session.scalar(
            select(func.count())
            .select_from(ActivationEvent)
            .where(ActivationEvent.agent_id == agent_id)
        )
    assert len(active) == 1
    assert count == len(events) >= 1
    # A chain: each event starts where the previous one ended; the last ends at the active one.
    assert events[0].from_variant_id is None
    for before, after in itertools.pairwise(events):
        assert after.from_variant_id == before.to_variant_id
    assert events[-1].to_variant_id == active[0]
