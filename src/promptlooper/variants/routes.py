"""``/api/projects/{id}/agents`` and ``/api/agents/...``."""

from __future__ import annotations

import uuid
from dataclasses import asdict
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, TypeAdapter, ValidationError
from werkzeug.http import parse_etags

from promptlooper.auth.deps import PrincipalDep, principal_of
from promptlooper.db.deps import Offset, SessionDep
from promptlooper.db.groupcommit import GroupCommit
from promptlooper.errors import validation_detail
from promptlooper.sweeps import service as sweeps
from promptlooper.sweeps.schemas import ExperimentDetail
from promptlooper.sweeps.spec import reject_file_references
from promptlooper.types import NO_ESCAPES
from promptlooper.variants import performance, promotion, service
from promptlooper.variants.compare import compare
from promptlooper.variants.metrics import Summary
from promptlooper.variants.models import Agent, Variant
from promptlooper.variants.resolver import Resolution, resolve
from promptlooper.variants.schemas import (
    MAX_BATCH,
    ActivationList,
    ActivationPublic,
    ActivationRequest,
    AgentCreate,
    AgentList,
    AgentPublic,
    AgentSweepRequest,
    AgentUpdate,
    ComparedItem,
    Comparison,
    HistoryPoint,
    HistoryResponse,
    MetricsResponse,
    PerformanceBatch,
    PerformanceIn,
    Promoted,
    PromoteRequest,
    Recorded,
    ResolvedConfig,
    RevisionList,
    RevisionPublic,
    RolledBack,
    VariantCreate,
    VariantList,
    VariantMetrics,
    VariantPublic,
    VariantUpdate,
    config_fields,
)

router = APIRouter(tags=["agents"])
performance_router = APIRouter(tags=["agents"])
"""The performance log's route alone: an agent logs every call it serves, so the app serves it
ahead of the router (``PERFORMANCE``)."""
UnitId = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=200,
        description="Resolve for this unit through the online experiment running on the agent",
    ),
]


async def _agent_out(session: SessionDep, agent: Agent) -> AgentPublic:
    active = await service.active_variant(session, agent.id)
    return AgentPublic.model_validate(agent).model_copy(
        update={"active_variant_id": active.id if active else None}
    )


def _variant_out(agent: Agent, variant: Variant) -> VariantPublic:
    return VariantPublic.model_validate(variant).model_copy(
        update={"config": resolve(agent, variant).config}
    )


def _new_variant_args(body: VariantCreate) -> dict[str, Any]:
    """What a create or clone body says about the new variant: its names and its overrides."""
    return {
        "name": body.name,
        "description": body.description,
        "slug": body.slug,
        "overrides": config_fields(body),
    }


async def _committed(
    session: SessionDep, principal: PrincipalDep, agent_id: uuid.UUID, variant: Variant
) -> VariantPublic:
    """Commit the request's work, then answer with the variant as it now resolves."""
    await session.commit()
    return _variant_out(await service.get_agent(session, principal, agent_id), variant)


def _resolved_out(found: Resolution) -> ResolvedConfig:
    return ResolvedConfig(
        agent_id=found.agent.id,
        agent_slug=found.agent.slug,
        source=found.source,  # type: ignore[arg-type]
        variant_id=found.variant.id if found.variant else None,
        variant_slug=found.variant.slug if found.variant else None,
        revision=found.revision,
        etag=found.etag,
        config=found.config,
        provenance=found.provenance,
        experiment=found.experiment,
    )


def _conditional(found: Resolution, if_none_match: str | None) -> Response:
    """The resolved config with its ETag, or 304 when the caller already has it: by the weak
    comparison RFC 9110 prescribes for If-None-Match, so ``W/"..."`` (a proxy that compresses
    the answer weakens its tag) and ``*`` match too."""
    headers = {"ETag": f'"{found.etag}"', "Cache-Control": "no-cache"}
    if if_none_match is not None and parse_etags(if_none_match).contains_weak(found.etag):
        return Response(status_code=status.HTTP_304_NOT_MODIFIED, headers=headers)
    return JSONResponse(_resolved_out(found).model_dump(mode="json"), headers=headers)


@router.post("/api/projects/{project_id}/agents", status_code=status.HTTP_201_CREATED)
async def create_agent(
    project_id: uuid.UUID, body: AgentCreate, principal: PrincipalDep, session: SessionDep
) -> AgentPublic:
    agent = await service.create_agent(
        session,
        principal,
        project_id,
        name=body.name,
        description=body.description,
        slug=body.slug,
        fields=config_fields(body),
    )
    await session.commit()
    return await _agent_out(session, agent)


@router.get("/api/projects/{project_id}/agents")
async def list_agents(
    project_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> AgentList:
    agents, total = await service.list_agents(
        session, principal, project_id, limit=limit, offset=offset
    )
    return AgentList(data=[await _agent_out(session, a) for a in agents], count=total)


@router.get("/api/projects/{project_id}/agents/{slug}/config", response_model=ResolvedConfig)
async def resolve_by_slug(
    project_id: uuid.UUID,
    slug: str,
    principal: PrincipalDep,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
    unit_id: UnitId = None,
) -> Response:
    """The config to run now for the agent ``slug`` (304 when ``If-None-Match`` still holds)."""
    agent = await service.get_agent_by_slug(session, principal, project_id, slug)
    return _conditional(await service.resolution(session, agent, unit_id), if_none_match)


@router.get("/api/agents/{agent_id}")
async def get_agent(
    agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> AgentPublic:
    return await _agent_out(session, await service.get_agent(session, principal, agent_id))


@router.patch("/api/agents/{agent_id}")
async def update_agent(
    agent_id: uuid.UUID, body: AgentUpdate, principal: PrincipalDep, session: SessionDep
) -> AgentPublic:
    """Change the fields sent; sending the current values changes (and records) nothing."""
    sent = body.model_dump(exclude_unset=True)
    agent = await service.update_agent(
        session,
        principal,
        agent_id,
        fields=config_fields(body),
        name=sent.get("name"),
        description=sent.get("description"),
    )
    await session.commit()
    return await _agent_out(session, agent)


@router.delete("/api/agents/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep) -> None:
    await service.delete_agent(session, principal, agent_id)
    await session.commit()


@router.get("/api/agents/{agent_id}/config", response_model=ResolvedConfig)
async def resolve_config(
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    if_none_match: Annotated[str | None, Header()] = None,
    unit_id: UnitId = None,
) -> Response:
    """The config to run now: the active variant over the agent's base, with provenance;
    with ``unit_id``, the variant an online experiment on this agent assigns that unit."""
    agent = await service.get_agent(session, principal, agent_id)
    return _conditional(await service.resolution(session, agent, unit_id), if_none_match)


@router.post("/api/agents/{agent_id}/variants", status_code=status.HTTP_201_CREATED)
async def create_variant(
    agent_id: uuid.UUID, body: VariantCreate, principal: PrincipalDep, session: SessionDep
) -> VariantPublic:
    """A variant overriding exactly the config fields in the body."""
    variant = await service.create_variant(session, principal, agent_id, **_new_variant_args(body))
    return await _committed(session, principal, agent_id, variant)


@router.get("/api/agents/{agent_id}/variants")
async def list_variants(
    agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> VariantList:
    agent = await service.get_agent(session, principal, agent_id)
    variants = await service.list_variants(session, principal, agent_id)
    return VariantList(data=[_variant_out(agent, v) for v in variants], count=len(variants))


@router.post("/api/agents/{agent_id}/clone", status_code=status.HTTP_201_CREATED)
async def clone_agent(
    agent_id: uuid.UUID, body: VariantCreate, principal: PrincipalDep, session: SessionDep
) -> VariantPublic:
    """A new variant from the agent's base config, with the overrides in the body."""
    variant = await service.clone_variant(
        session, principal, agent_id, None, **_new_variant_args(body)
    )
    return await _committed(session, principal, agent_id, variant)


@router.get("/api/agents/{agent_id}/variants/{variant_id}")
async def get_variant(
    agent_id: uuid.UUID, variant_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> VariantPublic:
    agent, variant = await service.get_variant(session, principal, agent_id, variant_id)
    return _variant_out(agent, variant)


@router.patch("/api/agents/{agent_id}/variants/{variant_id}")
async def update_variant(
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    body: VariantUpdate,
    principal: PrincipalDep,
    session: SessionDep,
) -> VariantPublic:
    """Override the fields sent; ``inherit`` lists fields to hand back to the agent."""
    sent = body.model_dump(exclude_unset=True)
    variant = await service.update_variant(
        session,
        principal,
        agent_id,
        variant_id,
        fields=config_fields(body),
        inherit=list(body.inherit),
        name=sent.get("name"),
        description=sent.get("description"),
    )
    return await _committed(session, principal, agent_id, variant)


@router.delete(
    "/api/agents/{agent_id}/variants/{variant_id}", status_code=status.HTTP_204_NO_CONTENT
)
async def delete_variant(
    agent_id: uuid.UUID, variant_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> None:
    """Delete a variant (the active one is deactivated first)."""
    await service.delete_variant(session, principal, agent_id, variant_id)
    await session.commit()


@router.post("/api/agents/{agent_id}/variants/{variant_id}/clone", status_code=201)
async def clone_variant(
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    body: VariantCreate,
    principal: PrincipalDep,
    session: SessionDep,
) -> VariantPublic:
    """A new variant from another: the body's overrides win, the rest keeps the source's."""
    variant = await service.clone_variant(
        session, principal, agent_id, variant_id, **_new_variant_args(body)
    )
    return await _committed(session, principal, agent_id, variant)


@router.post("/api/agents/{agent_id}/variants/{variant_id}/activate")
async def activate_variant(
    agent_id: uuid.UUID,
    variant_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    body: ActivationRequest | None = None,
) -> VariantPublic:
    """Make this the agent's one active variant (the previous one is deactivated)."""
    variant = await service.activate(
        session, principal, agent_id, variant_id, reason=(body or ActivationRequest()).reason
    )
    return await _committed(session, principal, agent_id, variant)


@router.post("/api/agents/{agent_id}/deactivate")
async def deactivate(
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    body: ActivationRequest | None = None,
) -> AgentPublic:
    """Serve the agent's base config again."""
    await service.deactivate(
        session, principal, agent_id, reason=(body or ActivationRequest()).reason
    )
    await session.commit()
    return await _agent_out(session, await service.get_agent(session, principal, agent_id))


@router.get("/api/agents/{agent_id}/revisions")
async def list_revisions(
    agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> RevisionList:
    revisions = await service.list_revisions(session, principal, agent_id)
    return RevisionList(
        data=[RevisionPublic.model_validate(r) for r in revisions], count=len(revisions)
    )


@router.post("/api/agents/{agent_id}/revisions/{revision_id}/rollback")
async def rollback(
    agent_id: uuid.UUID, revision_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> RolledBack:
    """Re-apply an old revision; it becomes a new revision (nothing when already current)."""
    agent, variant = await service.rollback(session, principal, agent_id, revision_id)
    await session.commit()
    if variant is None:
        return RolledBack(target="agent", agent=await _agent_out(session, agent))
    return RolledBack(
        target="variant",
        agent=await _agent_out(session, agent),
        variant=_variant_out(agent, variant),
    )


@router.get("/api/agents/{agent_id}/activations")
async def list_activations(
    agent_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ActivationList:
    events = await service.list_activations(session, principal, agent_id)
    return ActivationList(
        data=[ActivationPublic.model_validate(e) for e in events], count=len(events)
    )


def _metrics_out(variant_id: uuid.UUID | None, slug: str | None, summary: Summary) -> dict:
    return {"variant_id": variant_id, "variant_slug": slug, **asdict(summary)}


_RECORD = TypeAdapter(PerformanceIn)
_RECORDS = TypeAdapter(PerformanceBatch)
_RECORD_SCHEMA = PerformanceIn.model_json_schema()
_PERFORMANCE_BODY = {
    "required": True,
    "content": {
        "application/json": {
            "schema": {
                "anyOf": [
                    _RECORD_SCHEMA,
                    {
                        "type": "array",
                        "items": _RECORD_SCHEMA,
                        "minItems": 1,
                        "maxItems": MAX_BATCH,
                    },
                ]
            }
        }
    },
}


async def _performance_records(request: Request) -> list[PerformanceIn]:
    """One record or a list, read as what was sent. Declared as a union, the body would be
    checked against both readings and a 422 would report both, each under the name of a
    schema class; read here, it points at the caller's own fields (``tokens_in``,
    ``[3].cost``)."""
    body = await request.body()
    context = {NO_ESCAPES: b"\\u" not in body}
    try:
        if body.lstrip()[:1] == b"[":
            return _RECORDS.validate_json(body, context=context)
        return [_RECORD.validate_json(body, context=context)]
    except ValidationError as exc:
        raise RequestValidationError(
            validation_detail(exc.errors(include_url=False), ("body",))
        ) from None


@performance_router.post(
    "/api/agents/{agent_id}/performance",
    status_code=status.HTTP_201_CREATED,
    openapi_extra={"requestBody": _PERFORMANCE_BODY},
)
async def record_performance(
    agent_id: uuid.UUID, request: Request, principal: PrincipalDep
) -> Recorded:
    """Log served calls: one record, or a list of up to 1,000 (stored all or none), answered
    once committed."""
    # Each record's fields as they stand (a field left out holds its default, which
    # ``prepare`` reads as it reads one left out), without a copy per record.
    records = [vars(item) for item in await _performance_records(request)]
    log: GroupCommit[performance.Submission, int] = request.app.state.performance_log
    return Recorded(recorded=await log.submit(performance.prepare(principal, agent_id, records)))


_AGENT_ID: TypeAdapter[uuid.UUID] = TypeAdapter(uuid.UUID)


async def serve_performance(request: Request) -> Response:
    """``record_performance`` served ahead of the router (``api/direct.py``): an agent sends a
    record per call it serves, and the router's matching and dependency solving cost more than
    recording one. The caller is checked first, then the path, as the router would."""
    principal = await principal_of(request)
    try:
        agent_id = _AGENT_ID.validate_python(request.path_params["agent_id"])
    except ValidationError as exc:
        raise RequestValidationError(
            validation_detail(exc.errors(include_url=False), ("path", "agent_id"))
        ) from None
    recorded = await record_performance(agent_id, request, principal)
    return Response(
        recorded.model_dump_json(), status.HTTP_201_CREATED, media_type="application/json"
    )


PERFORMANCE = [
    (route, serve_performance)
    for route in performance_router.routes
    if isinstance(route, APIRoute) and route.endpoint is record_performance
]
"""The performance log's route, served ahead of the router."""


@router.get("/api/agents/{agent_id}/metrics")
async def agent_metrics(
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> MetricsResponse:
    """Per variant over a window (default: the last 30 days): n, success rate with a Wilson
    interval, p50/p95 latency, mean tokens and cost, mean quality with a 95 % interval."""
    start, end, summaries, slugs = await performance.metrics(
        session, principal, agent_id, since=since, until=until
    )
    data = [
        VariantMetrics(**_metrics_out(key, slugs.get(key) if key else None, summary))
        for key, summary in summaries.items()
    ]
    return MetricsResponse(agent_id=agent_id, since=start, until=end, data=data)


@router.get("/api/agents/{agent_id}/history")
async def agent_history(
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    bucket: Literal["hour", "day"] = "day",
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
) -> HistoryResponse:
    """The metrics per hour or day and variant, oldest first."""
    points = await performance.history(
        session, principal, agent_id, bucket=bucket, since=since, until=until
    )
    slugs = {v.id: v.slug for v in await service.list_variants(session, principal, agent_id)}
    data = [
        HistoryPoint(bucket_start=start, **_metrics_out(key, slugs.get(key) if key else None, s))
        for start, key, s in points
    ]
    return HistoryResponse(agent_id=agent_id, bucket=bucket, data=data)


@router.post("/api/agents/{agent_id}/experiments", status_code=status.HTTP_201_CREATED)
async def sweep_agent(
    agent_id: uuid.UUID,
    body: AgentSweepRequest,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> ExperimentDetail:
    """A draft experiment in the agent's project, sweeping around the agent's config; start
    it with ``POST /api/experiments/{id}/start``."""
    document = dict(body.model_extra or {})
    reject_file_references(document)
    experiment = await promotion.sweep_of(
        session,
        principal,
        agent_id,
        document,
        variant_id=body.variant_id,
        policy=request.app.state.provider_policy,
        max_runs=request.app.state.settings.sweep_max_runs,
        allow_python=request.app.state.settings.allow_python_callables,
    )
    await session.commit()
    counts = (await sweeps.progress(session, [experiment.id]))[experiment.id]
    return ExperimentDetail.with_progress(experiment, counts)


@router.post("/api/agents/{agent_id}/variants/from-experiment", status_code=201)
async def promote_from_experiment(
    agent_id: uuid.UUID, body: PromoteRequest, principal: PrincipalDep, session: SessionDep
) -> Promoted:
    """A variant from a sweep's best config (or the config named by ``config_hash``); model,
    prompt, system prompt, temperature, max_tokens, timeout and retries carry over."""
    variant, unmapped = await promotion.from_experiment(
        session,
        principal,
        agent_id,
        body.experiment_id,
        config_hash=body.config_hash,
        name=body.name,
        description=body.description,
    )
    await session.commit()
    agent = await service.get_agent(session, principal, agent_id)
    return Promoted(**_variant_out(agent, variant).model_dump(), unmapped_parameters=unmapped)


def _compared(
    variant: Variant | None, summaries: dict[uuid.UUID | None, Summary], any_active: bool
) -> ComparedItem:
    key = variant.id if variant else None
    slug = variant.slug if variant else None
    summary = summaries.get(key)
    return ComparedItem(
        name=slug or "agent",
        variant_id=key,
        is_active=variant.is_active if variant else not any_active,
        metrics=VariantMetrics(**_metrics_out(key, slug, summary)) if summary else None,
    )


@router.get("/api/agents/{agent_id}/compare")
async def compare_variants(
    agent_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    variants: Annotated[str, Query(description="Comma-separated variant ids or slugs")] = "",
) -> Comparison:
    """The agent and the chosen variants (all, if none chosen) field by field, with prompt
    diffs and each one's metrics over the last 30 days."""
    wanted = [w.strip() for w in variants.split(",") if w.strip()]
    agent, every, chosen = await service.choose_variants(session, principal, agent_id, wanted)
    _, _, summaries, _ = await performance.metrics(session, principal, agent_id)
    any_active = any(v.is_active for v in every)
    items = [_compared(v, summaries, any_active) for v in [None, *chosen]]
    return Comparison(agent_id=agent.id, items=items, **compare(agent, chosen))
