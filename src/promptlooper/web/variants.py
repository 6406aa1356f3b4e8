"""The variant pages: one variant's resolved config, revisions and metrics; the create, clone
and edit forms; and the actions (activate, deactivate, delete, roll back), each of which comes
back with a notice saying what changed."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from promptlooper.db.deps import SessionDep
from promptlooper.errors import Conflict, Invalid, NotFound
from promptlooper.projects import service as projects
from promptlooper.variants import performance, service
from promptlooper.variants.models import Agent, Variant
from promptlooper.variants.resolver import resolve
from promptlooper.variants.schemas import VariantCreate, VariantUpdate
from promptlooper.web.agent_forms import INHERIT, INPUTS, edit_values, refusal, shown, typed_config
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import FORM_ERROR, form_fields, validate
from promptlooper.web.render import page, redirect
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
BASE = PREFIX + "/agents/{agent_id}/variants"


def _url(agent_id: uuid.UUID, variant_id: uuid.UUID | None = None) -> str:
    return f"{PREFIX}/agents/{agent_id}" + (f"/variants/{variant_id}" if variant_id else "")


async def _variant_form(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    agent: Agent,
    *,
    variant: Variant | None,
    source: Variant | None,
    form: dict[str, str],
    errors: dict[str, str],
    status: int = 200,
) -> Response:
    project = await projects.get_project(session, viewer.principal, agent.project_id)
    return page(
        request,
        "agents/variant_form.html",
        viewer,
        status_code=status,
        project=project,
        area="agents",
        agent=agent,
        variant=variant,
        source=source,
        inputs=INPUTS,
        INHERIT=INHERIT,
        shown=shown,
        form=form,
        errors=errors,
    )


async def _source(
    session: SessionDep, viewer: ViewerDep, agent_id: uuid.UUID, ref: str | None
) -> Variant | None:
    """The variant a clone starts from (``?from=``), checked like any other variant."""
    if not ref:
        return None
    return await service.find_variant(session, viewer.principal, agent_id, ref)


@router.get(BASE + "/new")
async def new_variant(
    request: Request,
    agent_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    source_ref: Annotated[str | None, Query(alias="from", max_length=100)] = None,
) -> Response:
    agent = await service.get_agent(session, viewer.principal, agent_id)
    source = await _source(session, viewer, agent_id, source_ref)
    form: dict[str, str] = {}
    if source is not None:
        form = {k: shown(v) for k, v in source.overrides.items()}
        form |= {"name": f"{source.name} copy", "description": source.description}
    return await _variant_form(
        request, viewer, session, agent, variant=None, source=source, form=form, errors={}
    )


@router.post(BASE + "/new")
async def create_variant(
    request: Request, agent_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    agent = await service.get_agent(session, viewer.principal, agent_id)
    form = await form_fields(request)
    source = await _source(session, viewer, agent_id, form.get("from"))
    data: dict[str, Any] = {
        "name": form.get("name", ""),
        "description": form.get("description", ""),
    }
    if form.get("slug", "").strip():
        data["slug"] = form["slug"].strip()
    body, errors = validate(VariantCreate, data | typed_config(form))
    if body is not None:
        try:
            variant = await service.create_variant(
                session,
                viewer.principal,
                agent_id,
                name=body.name,
                description=body.description,
                slug=body.slug,
                overrides=body.model_dump(
                    exclude_unset=True, exclude={"name", "slug", "description"}
                ),
                origin={"cloned_from": str(source.id)} if source else None,
            )
        except (Conflict, Invalid) as exc:
            await session.rollback()
            errors = refusal(exc)
        else:
            await session.commit()
            what = f"cloned from {source.name}" if source else "created"
            return redirect(
                request,
                _url(agent_id, variant.id),
                f"Variant {variant.name} {what}; it is not active until you activate it.",
            )
    agent = await service.get_agent(session, viewer.principal, agent_id)
    return await _variant_form(
        request,
        viewer,
        session,
        agent,
        variant=None,
        source=source,
        form=form,
        errors=errors,
        status=422,
    )


def _edit_form_values(variant: Variant) -> dict[str, str]:
    form = {"name": variant.name, "description": variant.description}
    form |= {k: shown(v) for k, v in variant.overrides.items()}
    form |= {INHERIT + i.name: "on" for i in INPUTS if i.name not in variant.overrides}
    return form | {"version": service.variant_version(variant)}


@router.get(BASE + "/{variant_id}/edit")
async def edit_variant(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    agent, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    return await _variant_form(
        request,
        viewer,
        session,
        agent,
        variant=variant,
        source=None,
        form=_edit_form_values(variant),
        errors={},
    )


@router.post(BASE + "/{variant_id}/edit")
async def save_variant(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    agent, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    form = await form_fields(request)
    status = 422
    try:
        service.check_version(variant, form.get("version", ""))
    except Conflict as exc:
        body, errors, status = None, {FORM_ERROR: exc.message}, 409
    else:
        values, inherit, errors = edit_values(form, variant.overrides)
        data = {"name": form.get("name", ""), "description": form.get("description", "")}
        body, problems = validate(VariantUpdate, data | values | {"inherit": inherit})
        errors = problems | errors
    if body is not None and not errors:
        revision = variant.revision
        try:
            variant = await service.update_variant(
                session,
                viewer.principal,
                agent_id,
                variant_id,
                fields=body.model_dump(
                    exclude_unset=True, exclude={"name", "description", "inherit"}
                ),
                inherit=list(body.inherit),
                name=body.name,
                description=body.description,
            )
        except (Conflict, Invalid) as exc:
            await session.rollback()
            errors = refusal(exc)
        else:
            await session.commit()
            notice = (
                f"Variant {variant.name} saved as revision {variant.revision}."
                if variant.revision != revision
                else f"Variant {variant.name} saved; its config did not change."
            )
            return redirect(request, _url(agent_id, variant_id), notice)
    agent, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    return await _variant_form(
        request,
        viewer,
        session,
        agent,
        variant=variant,
        source=None,
        form=form,
        errors=errors,
        status=status,
    )


@router.post(BASE + "/{variant_id}/activate")
async def activate(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    form = await form_fields(request)
    variant = await service.activate(
        session, viewer.principal, agent_id, variant_id, reason=form.get("reason", "")[:1000]
    )
    await session.commit()
    return redirect(
        request,
        _url(agent_id),
        f"Variant {variant.name} activated: the agent serves it from now on.",
    )


@router.post(BASE + "/{variant_id}/deactivate")
async def deactivate(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    _, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    if not variant.is_active:
        return redirect(request, _url(agent_id), f"Variant {variant.name} was not active.")
    form = await form_fields(request)
    await service.deactivate(
        session, viewer.principal, agent_id, reason=form.get("reason", "")[:1000]
    )
    await session.commit()
    return redirect(
        request,
        _url(agent_id),
        f"Variant {variant.name} deactivated; the agent serves its base config.",
    )


@router.post(BASE + "/{variant_id}/delete")
async def delete(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    _, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    name, was_active = variant.name, variant.is_active
    await service.delete_variant(session, viewer.principal, agent_id, variant_id)
    await session.commit()
    also = " It was active: the agent serves its base config now." if was_active else ""
    return redirect(request, _url(agent_id), f"Variant {name} deleted.{also}")


@router.post(BASE + "/{variant_id}/rollback")
async def rollback(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    _, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    form = await form_fields(request)
    try:
        revision_id = uuid.UUID(form.get("revision_id", ""))
    except ValueError:
        raise NotFound("Revision not found for this agent") from None
    before = variant.revision
    _, variant_after = await service.rollback(session, viewer.principal, agent_id, revision_id)
    if variant_after is None or variant_after.id != variant_id:
        raise Invalid("That revision belongs to another variant or to the agent's base config")
    await session.commit()
    notice = (
        f"Variant {variant_after.name} rolled back: its config is now revision "
        f"{variant_after.revision}."
        if variant_after.revision != before
        else f"Variant {variant_after.name} already had that config; nothing changed."
    )
    return redirect(request, _url(agent_id, variant_id), notice)


async def _clone_source(
    session: SessionDep, viewer: ViewerDep, agent_id: uuid.UUID, variant: Variant
) -> Variant | None:
    """The variant this one was cloned from, while it exists (None for a clone of the base
    config, a variant that is no clone, or a source deleted since)."""
    ref = (variant.origin or {}).get("cloned_from")
    if not ref or ref == "agent":
        return None
    try:
        return await service.find_variant(session, viewer.principal, agent_id, str(ref))
    except NotFound:
        return None


# After ".../new": a path parameter would otherwise claim "new".
@router.get(BASE + "/{variant_id}")
async def variant_page(
    request: Request,
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
) -> Response:
    agent, variant = await service.get_variant(session, viewer.principal, agent_id, variant_id)
    project = await projects.get_project(session, viewer.principal, agent.project_id)
    revisions = await service.list_revisions(session, viewer.principal, agent_id)
    since, until, summaries, _ = await performance.metrics(session, viewer.principal, agent_id)
    return page(
        request,
        "agents/variant.html",
        viewer,
        project=project,
        area="agents",
        agent=agent,
        variant=variant,
        cloned_from=(variant.origin or {}).get("cloned_from"),
        clone_source=await _clone_source(session, viewer, agent_id, variant),
        resolved=resolve(agent, variant),
        revisions=[r for r in reversed(revisions) if r.variant_id == variant.id],
        summary=summaries.get(variant.id),
        since=since,
        until=until,
        inputs=INPUTS,
    )
