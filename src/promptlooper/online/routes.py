"""Online experiments: the admin registry and settings, and the public browser-facing routes.

Public routes (listing, assignment, ingestion) need no credentials: browsers call them. The
ingestion answers keep the seed's exact body ``{"ok": true, "accepted": bool}``; why an event
was refused travels in the ``X-Event-Rejected`` header (and per event in the batch answer).
"""

from __future__ import annotations

import uuid
from functools import cache
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from promptlooper.auth.deps import AdminDep
from promptlooper.db.deps import SessionDep
from promptlooper.online import definitions, guardrails, history, offline, power, results, service
from promptlooper.online.ingestion import Intake, Verdict
from promptlooper.online.origins import Origins
from promptlooper.online.schemas import (
    Accepted,
    Assignment,
    BatchIn,
    BatchItem,
    BatchOut,
    EventIn,
    ExperimentAdmin,
    ExperimentAdminList,
    ExperimentCreate,
    ExperimentPublic,
    ExperimentResults,
    ExperimentUpdate,
    MetricCreate,
    MetricList,
    MetricPublic,
    SettingsBody,
)

admin_router = APIRouter(prefix="/api/admin", tags=["online experiments (admin)"])
public_router = APIRouter(tags=["online experiments"])
REJECTED_HEADER = "X-Event-Rejected"

# --- admin ------------------------------------------------------------------------------------


@admin_router.get("/settings")
async def get_settings(_admin: AdminDep, session: SessionDep) -> SettingsBody:
    return SettingsBody.model_validate(await service.site_settings(session), from_attributes=True)


@admin_router.put("/settings")
async def put_settings(
    body: SettingsBody, request: Request, _admin: AdminDep, session: SessionDep
) -> SettingsBody:
    """``experiments_enabled: false`` is the global kill switch for online experiments. The
    fields the body leaves out keep their values."""
    saved = await service.save_settings(session, body)
    await session.commit()
    _intake(request).invalidate()
    return SettingsBody.model_validate(saved, from_attributes=True)


@admin_router.post("/experiments", status_code=status.HTTP_201_CREATED)
async def create_experiment(
    body: ExperimentCreate, request: Request, _admin: AdminDep, session: SessionDep
) -> ExperimentAdmin:
    """Register an experiment; allocations must sum to 100 with exactly one control."""
    experiment = await service.create_experiment(session, body, _known(request))
    await session.commit()
    _intake(request).invalidate()
    return ExperimentAdmin.model_validate(experiment)


@admin_router.get("/experiments")
async def list_experiments(
    _admin: AdminDep, session: SessionDep, include_archived: bool = False
) -> ExperimentAdminList:
    """Every experiment (404 while experiments are disabled site-wide)."""
    await service.require_enabled(session)
    found = await service.list_experiments(session, include_archived=include_archived)
    return ExperimentAdminList(
        data=[ExperimentAdmin.model_validate(e) for e in found], count=len(found)
    )


@admin_router.get("/experiments/{experiment_key}")
async def get_experiment(
    experiment_key: str, _admin: AdminDep, session: SessionDep
) -> ExperimentAdmin:
    return ExperimentAdmin.model_validate(await service.get_experiment(session, experiment_key))


@admin_router.put("/experiments/{experiment_key}")
async def update_experiment(
    experiment_key: str,
    body: ExperimentUpdate,
    request: Request,
    _admin: AdminDep,
    session: SessionDep,
) -> ExperimentAdmin:
    """Replace the definition (the hash seed stays unless the body sets a new one). A
    ``GET``'s answer may be sent back edited: its read-only fields must be unchanged."""
    experiment = await service.update_experiment(session, experiment_key, body, _known(request))
    await session.commit()
    _intake(request).invalidate()
    return ExperimentAdmin.model_validate(experiment)


@admin_router.post("/experiments/{experiment_key}/archive")
async def archive_experiment(
    experiment_key: str, request: Request, _admin: AdminDep, session: SessionDep
) -> ExperimentAdmin:
    """Stop it and drop it from the public list; events and results are kept."""
    experiment = await service.archive_experiment(session, experiment_key)
    await session.commit()
    _intake(request).invalidate()
    return ExperimentAdmin.model_validate(experiment)


@admin_router.post("/experiments/{experiment_key}/arms/{variant_key}/resume")
async def resume_arm(
    experiment_key: str, variant_key: str, admin: AdminDep, session: SessionDep
) -> dict[str, Any]:
    """Serve an arm a guardrail stopped its own variant again (409 when it is not stopped);
    audited with who resumed it. The guardrail does not stop it again."""
    event = await guardrails.resume(session, experiment_key, variant_key, admin.username)
    await session.commit()
    return history.public_event(event)


@admin_router.post("/metrics", status_code=status.HTTP_201_CREATED)
async def create_metric(
    body: MetricCreate, request: Request, _admin: AdminDep, session: SessionDep
) -> MetricPublic:
    """Define a metric experiments can name; its ``source`` event name is accepted by
    ingestion from now on."""
    metric = await definitions.create_metric(session, body)
    await session.commit()
    _intake(request).invalidate()
    return MetricPublic.model_validate(metric)


@admin_router.get("/metrics")
async def list_metrics(
    _admin: AdminDep, session: SessionDep, project_id: uuid.UUID | None = None
) -> MetricList:
    """Every metric, or with ``project_id`` that project's and the site-wide ones."""
    found = await definitions.list_metrics(session, project_id)
    return MetricList(data=[MetricPublic.model_validate(m) for m in found], count=len(found))


@admin_router.get("/metrics/{name}")
async def get_metric(name: str, _admin: AdminDep, session: SessionDep) -> MetricPublic:
    return MetricPublic.model_validate(await definitions.get_metric(session, name))


@admin_router.delete("/metrics/{name}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_metric(name: str, request: Request, _admin: AdminDep, session: SessionDep) -> None:
    """Refused (409) while an experiment that is not archived names the metric."""
    await definitions.delete_metric(session, name)
    await session.commit()
    _intake(request).invalidate()


@public_router.get("/api/v1/experiments/results")
async def experiment_results(
    request: Request,
    _admin: AdminDep,
    session: SessionDep,
    experiment_key: Annotated[str | None, Query(max_length=100)] = None,
    correction: Literal["holm", "bh"] = "holm",
    prior: Literal["flat", "proper"] = "flat",
) -> list[ExperimentResults]:
    """Per-variant counts for one experiment (or every one when no key is given); each
    treatment's ``stats`` against control and ``metrics`` (the defined metrics the experiment
    names), p-values adjusted for multiple comparisons (Holm–Bonferroni, or
    Benjamini–Hochberg with ``correction=bh``); and a health block. ``prior=proper`` gives
    the Bayesian result GrowthBook's proper prior, Normal(0, 0.3²) on the relative lift. Arms
    serving agent variants promoted from a sweep carry ``offline``: the sweep score and the
    lift it predicted beside the lift observed."""
    if experiment_key is not None:
        keys = [experiment_key]
    else:
        keys = [e.experiment_key for e in await service.list_experiments(session)]
    found = await results.compute(
        session, keys, correction=correction, proper_prior=prior == "proper"
    )
    for result in found:
        experiment = await service.get_experiment(session, result["experiment_key"])
        await offline.attach(session, experiment, result, request.app.state.sweep_scores)
    return [ExperimentResults(**r) for r in found]


@public_router.get("/api/v1/experiments/power")
async def experiment_power(
    _admin: AdminDep,
    session: SessionDep,
    experiment_key: Annotated[str | None, Query(max_length=100)] = None,
    metric: Annotated[str | None, Query(max_length=50)] = None,
    lift: Annotated[
        float | None,
        # Range-checked by ``power.check_lift``, as the CLI's is, so both say the same.
        Query(
            allow_inf_nan=False,
            description=f"Relative, 0.05 = +5 %; above -1 and at most {power.MAX_RELATIVE:g}",
        ),
    ] = None,
    baseline: Annotated[
        float | None, Query(allow_inf_nan=False, description="Planned: the control mean")
    ] = None,
    variance: Annotated[
        float | None,
        Query(gt=0, allow_inf_nan=False, description="Planned: per-unit variance (rate: p(1 − p))"),
    ] = None,
    units_per_day: Annotated[
        float | None, Query(gt=0, le=power.MAX_UNITS_PER_DAY, allow_inf_nan=False)
    ] = None,
    arms: Annotated[int, Query(ge=2, le=20)] = 2,
    days: Annotated[int | None, Query(ge=1, le=3650)] = None,
) -> dict[str, Any]:
    """Power and duration. With ``experiment_key``: the power a running experiment has reached
    against ``lift`` (default +5 %) on ``metric`` (default its primary one), and the days left
    at its traffic (``reason`` says why while they cannot be computed yet). Without: plan one
    from ``baseline`` (and ``variance``, known for a rate), ``units_per_day`` and ``arms`` —
    the minimum detectable lift in ``days``, or the days a ``lift`` needs."""
    if experiment_key is not None:
        power.check_running(
            baseline=baseline, variance=variance, units_per_day=units_per_day, days=days
        )
        return await power.reached(
            session, experiment_key, lift=0.05 if lift is None else lift, metric=metric
        )
    return power.planned(baseline, variance, units_per_day, arms=arms, days=days, lift=lift)


# --- public -----------------------------------------------------------------------------------


@public_router.get("/api/experiments")
async def public_experiments(session: SessionDep) -> list[ExperimentPublic]:
    """The registry for clients: disabled experiments are listed (with ``enabled: false``)
    so a client skips them; ``[]`` when experiments are off site-wide."""
    return [ExperimentPublic.model_validate(e) for e in await service.public_experiments(session)]


@public_router.get("/api/experiments/{experiment_key}/assignment")
async def assign(
    experiment_key: str,
    request: Request,
    session: SessionDep,
    unit_id: Annotated[str, Query(min_length=1, max_length=200)],
    path: Annotated[str | None, Query(max_length=2000)] = None,
) -> Assignment:
    """The unit's variant, the same one a GrowthBook SDK with this key, seed, weights and
    coverage would pick; ``variant_key: null`` when the unit is not in the experiment. A
    bandit's unit keeps the arm it was first given (stored), and a unit of an arm a guardrail
    stopped is given the control."""
    experiment = await service.get_experiment(session, experiment_key)
    if experiment.type != "bandit":
        variant = await service.assign_unit(session, experiment_key, unit_id, path)
        return Assignment(experiment_key=experiment_key, variant_key=variant)
    # A new unit's arm is stored: this request writes, so it takes the writer (and ends its
    # read first, which on SQLite would otherwise hold a snapshot beside the write).
    await session.rollback()
    state = request.app.state
    async with state.sessionmaker(bind=state.engine) as writer:
        variant = await service.assign_unit(writer, experiment_key, unit_id, path)
        await writer.commit()
    return Assignment(experiment_key=experiment_key, variant_key=variant)


def _intake(request: Request) -> Intake:
    return request.app.state.intake


def _known(request: Request) -> service.KnownVariants:
    return request.app.state.known_agent_variants


# --- ingestion --------------------------------------------------------------------------------
# The three ingestion routes are declared on the router (that is where the API documentation
# comes from) but served ahead of it (``api/direct.py``) by the functions below, which read and
# validate the body themselves, in one pass, with pydantic's JSON parser.

ModelT = TypeVar("ModelT", bound=BaseModel)
_ACCEPTED = {ok: Accepted(accepted=ok).model_dump_json().encode() for ok in (True, False)}


async def _parse(request: Request, model: type[ModelT]) -> ModelT:
    body = await request.body()
    try:
        parsed = model.model_validate_json(body)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors) from None
    return parsed


def _documented_body(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its body itself."""
    schema = model.model_json_schema()
    definitions = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            if "$ref" in node:
                return inline(definitions[node["$ref"].rsplit("/", 1)[-1]])
            return {key: inline(value) for key, value in node.items()}
        if isinstance(node, list):
            return [inline(item) for item in node]
        return node

    content = {"application/json": {"schema": inline(schema)}}
    return {"requestBody": {"required": True, "content": content}}


def _sender(request: Request) -> dict[str, Any]:
    """What ingestion judges of who sent the request: its user agent, and whether a page on
    another site may write (CORS alone does not stop a "simple" cross-site POST)."""
    headers = request.headers
    origins: Origins = request.app.state.origins
    return {
        "user_agent": headers.get("user-agent"),
        "origin_allowed": origins.allow(headers.get("origin"), headers.get("host")),
    }


async def _single(request: Request, kind: str | None) -> Response:
    event = await _parse(request, EventIn)
    if kind is not None and event.event_name not in (None, kind):
        # The route and the name disagree: storing either would misreport the event.
        message = f"this route records {kind} events; send {event.event_name!r} to /event"
        problem = {"loc": ("body", "event_name"), "msg": message, "type": "value_error"}
        raise RequestValidationError([problem])
    (verdict,) = await _intake(request).ingest([event], event_type=kind, **_sender(request))
    headers = {REJECTED_HEADER: verdict.reason} if verdict.reason else None
    return Response(_ACCEPTED[verdict.accepted], 202, headers, media_type="application/json")


@public_router.post(
    "/api/experiments/event",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    openapi_extra=_documented_body(EventIn),
)
async def ingest_event(request: Request) -> Response:
    """One event (``event_name``: cta_click, form_start, form_submit, conversion or
    impression). ``accepted: false`` stores nothing; the reason is in ``X-Event-Rejected``."""
    return await _single(request, None)


@public_router.post(
    "/api/experiments/impression",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=Accepted,
    openapi_extra=_documented_body(EventIn),
)
async def ingest_impression(request: Request) -> Response:
    """An exposure: the unit saw its variant. ``event_name`` may be left out or be
    ``impression``; any other name is a 422."""
    return await _single(request, "impression")


@public_router.post(
    "/api/experiments/batch",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BatchOut,
    openapi_extra=_documented_body(BatchIn),
)
async def ingest_batch(request: Request) -> Response:
    """Up to 1,000 events; each gets its own verdict and reason, in order."""
    body = await _parse(request, BatchIn)
    verdicts = await _intake(request).ingest(body.events, **_sender(request))
    accepted = sum(v.accepted for v in verdicts)
    answer = BatchOut(
        accepted=accepted,
        rejected=len(verdicts) - accepted,
        results=[_item(v) for v in verdicts],
    )
    return Response(answer.model_dump_json(), 202, media_type="application/json")


@cache
def _item(verdict: Verdict) -> BatchItem:
    return BatchItem(accepted=verdict.accepted, reason=verdict.reason)


_BROWSER_ENDPOINTS = (public_experiments, assign, ingest_event, ingest_impression, ingest_batch)
BROWSER_PATHS = tuple(
    route.path
    for route in public_router.routes
    if isinstance(route, APIRoute) and route.endpoint in _BROWSER_ENDPOINTS
)
"""The routes the A/B script calls from pages on other sites: only these answer CORS."""


INGESTION = [
    (route, route.endpoint)
    for route in public_router.routes
    if isinstance(route, APIRoute)
    and route.endpoint in (ingest_event, ingest_impression, ingest_batch)
]
"""The ingestion routes, each served ahead of the router by its own endpoint."""
