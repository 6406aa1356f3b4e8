"""The agents pages: a project's agents, a new agent, one agent with its variants and
activation log, and variants compared side by side over a window of served calls."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response

from promptlooper.db.base import utcnow
from promptlooper.db.deps import SessionDep
from promptlooper.errors import Conflict, Invalid, NotFound
from promptlooper.projects import service as projects
from promptlooper.variants import performance, service
from promptlooper.variants.compare import clearly_best, compare
from promptlooper.variants.config import CONFIG_FIELDS, provenance
from promptlooper.variants.models import Agent
from promptlooper.variants.schemas import AgentCreate, AgentUpdate
from promptlooper.web.agent_forms import INPUTS, base_values, refusal, shown, typed_config
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import FORM_ERROR, form_fields, validate
from promptlooper.web.render import page, redirect
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 50
WINDOWS = {"1d": 1, "7d": 7, "30d": 30, "90d": 90, "365d": 365}
Window = Literal["1d", "7d", "30d", "90d", "365d"]


@router.get(PREFIX + "/projects/{project_id}/agents")
async def agents(
    request: Request,
    project_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    project = await projects.get_project(session, viewer.principal, project_id)
    rows, total = await service.list_agents(
        session,
        viewer.principal,
        project_id,
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
    )
    return page(
        request,
        "agents/list.html",
        viewer,
        project=project,
        area="agents",
        agents=rows,
        active=await service.active_variants(session, [a.id for a in rows]),
        total=total,
        page_number=page_number,
        page_size=PAGE_SIZE,
    )


async def _new_agent_form(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    project_id: uuid.UUID,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    project = await projects.get_project(session, viewer.principal, project_id)
    return page(
        request,
        "agents/new_agent.html",
        viewer,
        status_code=status,
        project=project,
        area="agents",
        inputs=INPUTS,
        form=form,
        errors=errors,
    )


@router.get(PREFIX + "/projects/{project_id}/agents/new")
async def new_agent(
    request: Request, project_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    return await _new_agent_form(request, viewer, session, project_id, {}, {})


@router.post(PREFIX + "/projects/{project_id}/agents/new")
async def create_agent(
    request: Request, project_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    form = await form_fields(request)
    data = {"name": form.get("name", ""), "description": form.get("description", "")}
    if form.get("slug", "").strip():
        data["slug"] = form["slug"].strip()
    body, errors = validate(AgentCreate, data | typed_config(form))
    if body is not None:
        try:
            agent = await service.create_agent(
                session,
                viewer.principal,
                project_id,
                name=body.name,
                description=body.description,
                slug=body.slug,
                fields=body.model_dump(exclude_unset=True, exclude={"name", "slug", "description"}),
            )
        except (Conflict, Invalid) as exc:
            await session.rollback()
            errors = refusal(exc)
        else:
            await session.commit()
            return redirect(
                request,
                f"{PREFIX}/agents/{agent.id}",
                f"Agent {agent.name} created; it serves its base config until a variant is "
                "activated.",
            )
    return await _new_agent_form(request, viewer, session, project_id, form, errors, 422)


@router.get(PREFIX + "/agents/{agent_id}")
async def agent_page(
    request: Request, agent_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    agent = await service.get_agent(session, viewer.principal, agent_id)
    project = await projects.get_project(session, viewer.principal, agent.project_id)
    variants = await service.list_variants(session, viewer.principal, agent_id)
    events = await service.list_activations(session, viewer.principal, agent_id)
    revisions = await service.list_revisions(session, viewer.principal, agent_id)
    return page(
        request,
        "agents/agent.html",
        viewer,
        project=project,
        area="agents",
        agent=agent,
        variants=variants,
        active=next((v for v in variants if v.is_active), None),
        sources={v.id: provenance(agent.config, v.overrides) for v in variants},
        names={v.id: v.name for v in variants},
        revision_counts=Counter(r.variant_id for r in revisions),
        base_revisions=[r for r in reversed(revisions) if r.variant_id is None],
        events=list(reversed(events)),
        inputs=INPUTS,
        shown=shown,
    )


async def _base_form(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    agent: Agent,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    project = await projects.get_project(session, viewer.principal, agent.project_id)
    return page(
        request,
        "agents/agent_form.html",
        viewer,
        status_code=status,
        project=project,
        area="agents",
        agent=agent,
        inputs=INPUTS,
        form=form,
        errors=errors,
    )


@router.get(PREFIX + "/agents/{agent_id}/edit")
async def edit_agent(
    request: Request, agent_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    agent = await service.get_agent(session, viewer.principal, agent_id)
    form = {"name": agent.name, "description": agent.description}
    form |= {i.name: shown(agent.config[i.name]) for i in INPUTS}
    form["version"] = service.agent_version(agent)
    return await _base_form(request, viewer, session, agent, form, {})


@router.post(PREFIX + "/agents/{agent_id}/edit")
async def save_agent(
    request: Request, agent_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """Save the base config as the API's PATCH does: only changed values make a revision; a
    form loaded before someone else's change is refused whole (409), as a variant's is."""
    agent = await service.get_agent(session, viewer.principal, agent_id)
    form = await form_fields(request)
    status = 422
    try:
        service.check_agent_version(agent, form.get("version", ""))
    except Conflict as exc:
        body, errors, status = None, {FORM_ERROR: exc.message}, 409
    else:
        data = {"name": form.get("name", ""), "description": form.get("description", "")}
        body, errors = validate(AgentUpdate, data | base_values(form))
    if body is not None:
        revision = agent.revision
        try:
            agent = await service.update_agent(
                session,
                viewer.principal,
                agent_id,
                fields=body.model_dump(include=set(CONFIG_FIELDS)),
                name=body.name,
                description=body.description,
            )
        except (Conflict, Invalid) as exc:
            await session.rollback()
            errors = refusal(exc)
        else:
            await session.commit()
            notice = (
                f"Base config of {agent.name} saved as revision {agent.revision}; variants "
                "follow it wherever they do not override a field."
                if agent.revision != revision
                else f"Agent {agent.name} saved; its base config did not change."
            )
            return redirect(request, f"{PREFIX}/agents/{agent_id}", notice)
    agent = await service.get_agent(session, viewer.principal, agent_id)
    return await _base_form(request, viewer, session, agent, form, errors, status)


@router.post(PREFIX + "/agents/{agent_id}/rollback")
async def rollback_base(
    request: Request, agent_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """Re-apply an old revision of the base config as a new one (the API's rollback)."""
    agent = await service.get_agent(session, viewer.principal, agent_id)
    form = await form_fields(request)
    try:
        revision_id = uuid.UUID(form.get("revision_id", ""))
    except ValueError:
        raise NotFound("Revision not found for this agent") from None
    before = agent.revision
    agent, variant = await service.rollback(session, viewer.principal, agent_id, revision_id)
    if variant is not None:
        raise Invalid("That revision belongs to a variant; roll it back on the variant's page")
    await session.commit()
    notice = (
        f"Base config of {agent.name} rolled back: it is now revision {agent.revision}."
        if agent.revision != before
        else f"The base config of {agent.name} already had that config; nothing changed."
    )
    return redirect(request, f"{PREFIX}/agents/{agent_id}", notice)


@router.post(PREFIX + "/agents/{agent_id}/delete")
async def delete_agent(
    request: Request, agent_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    agent = await service.get_agent(session, viewer.principal, agent_id)
    project_id, name = agent.project_id, agent.name
    await service.delete_agent(session, viewer.principal, agent_id)
    await session.commit()
    return redirect(
        request,
        f"{PREFIX}/projects/{project_id}/agents",
        f"Agent {name} deleted, with its variants, revisions and performance log.",
    )


@router.get(PREFIX + "/agents/{agent_id}/compare")
async def compare_page(
    request: Request,
    agent_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    variant: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies the default)
    window: Window = "30d",
) -> Response:
    agent, every, chosen = await service.choose_variants(
        session, viewer.principal, agent_id, [v for v in variant if v]
    )
    project = await projects.get_project(session, viewer.principal, agent.project_id)
    since, until, summaries, _ = await performance.metrics(
        session, viewer.principal, agent_id, since=utcnow() - timedelta(days=WINDOWS[window])
    )
    shown_summaries = {v.id: summaries[v.id] for v in chosen if v.id in summaries}
    return page(
        request,
        "agents/compare.html",
        viewer,
        project=project,
        area="agents",
        agent=agent,
        every=every,
        chosen=chosen,
        window=window,
        windows=list(WINDOWS),
        since=since,
        until=until,
        diff=compare(agent, chosen),
        summaries=shown_summaries,
        best_success=clearly_best({k: s.success_ci for k, s in shown_summaries.items() if s.n}),
        best_quality=clearly_best(
            {k: s.quality_ci for k, s in shown_summaries.items() if s.quality_n}
        ),
    )
