"""Online experiments: the admin registry and settings, and the public browser-facing routes.

Public routes (listing, assignment, ingestion) need no credentials: browsers call them. The
ingestion answers keep the seed's exact body ``{"ok": true, "accepted": bool}``; why an event
was refused travels in the ``X-Event-Rejected`` header (and per event in the batch answer).
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Query, Request, Response, status

from promptlooper.auth.deps import AdminDep
from promptlooper.db.deps import SessionDep
from promptlooper.online import results, service
from promptlooper.online.ingestion import Intake
from promptlooper.online.schemas import (
    Accepted,
    Assignment,
    BatchIn,
    BatchItem,
    BatchOut,
    EventIn,
    ExperimentAdmin,
    ExperimentCreate,
    ExperimentDefinition,
    ExperimentPublic,
    ExperimentResults,
    SettingsBody,
)

admin_router = APIRouter(prefix="/api/admin", tags=["online experiments (admin)"])
public_router = APIRouter(tags=["online experiments"])
REJECTED_HEADER = "X-Event-Rejected"

UserAgent = Annotated[str | None, Header(alias="user-agent")]


# --- admin ------------------------------------------------------------------------------------


@admin_router.get("/settings")
async def get_settings(_admin: AdminDep, session: SessionDep) -> SettingsBody:
    found = await service.site_settings(session)
    return SettingsBody(site_name=found.site_name, experiments_enabled=found.experiments_enabled)


@admin_router.put("/settings")
async def put_settings(
    body: SettingsBody, request: Request, _admin: AdminDep, session: SessionDep
) -> SettingsBody:
    """``experiments_enabled: false`` is the global kill switch for online experiments."""
    await service.save_settings(session, body)
    await session.commit()
    _intake(request).invalidate()
    return body


@admin_router.post("/experiments", status_code=status.HTTP_201_CREATED)
async def create_experiment(
    body: ExperimentCreate, request: Request, _admin: AdminDep, session: SessionDep
) -> ExperimentAdmin:
    """Register an experiment; allocations must sum to 100 with exactly one control."""
    experiment = await service.create_experiment(session, body)
    await session.commit()
    _intake(request).invalidate()
    return ExperimentAdmin.model_validate(experiment)


@admin_router.get("/experiments")
async def list_experiments(
    _admin: AdminDep, session: SessionDep, include_archived: bool = False
) -> list[ExperimentAdmin]:
    """Every experiment (404 while experiments are disabled site-wide)."""
    await service.require_enabled(session)
    found = await service.list_experiments(session, include_archived=include_archived)
    return [ExperimentAdmin.model_validate(e) for e in found]


@admin_router.get("/experiments/{experiment_key}")
async def get_experiment(
    experiment_key: str, _admin: AdminDep, session: SessionDep
) -> ExperimentAdmin:
    return ExperimentAdmin.model_validate(await service.get_experiment(session, experiment_key))


@admin_router.put("/experiments/{experiment_key}")
async def update_experiment(
    experiment_key: str,
    body: ExperimentDefinition,
    request: Request,
    _admin: AdminDep,
    session: SessionDep,
) -> ExperimentAdmin:
    """Replace the definition (the hash seed stays unless the body sets a new one)."""
    experiment = await service.update_experiment(session, experiment_key, body)
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


@public_router.get("/api/v1/experiments/results")
async def experiment_results(
    _admin: AdminDep,
    session: SessionDep,
    experiment_key: Annotated[str | None, Query(max_length=100)] = None,
    correction: Literal["holm", "bh"] = "holm",
) -> list[ExperimentResults]:
    """Per-variant counts for one experiment (or every one when no key is given); each
    treatment's ``stats`` against control, p-values adjusted for multiple comparisons
    (Holm–Bonferroni, or Benjamini–Hochberg with ``correction=bh``); and a health block."""
    if experiment_key is not None:
        keys = [experiment_key]
    else:
        keys = [e.experiment_key for e in await service.list_experiments(session)]
    found = await results.compute(session, keys, correction=correction)
    return [ExperimentResults(**r) for r in found]


# --- public -----------------------------------------------------------------------------------


@public_router.get("/api/experiments")
async def public_experiments(session: SessionDep) -> list[ExperimentPublic]:
    """The registry for clients: disabled experiments are listed (with ``enabled: false``)
    so a client skips them; ``[]`` when experiments are off site-wide."""
    return [ExperimentPublic.model_validate(e) for e in await service.public_experiments(session)]


@public_router.get("/api/experiments/{experiment_key}/assignment")
async def assign(
    experiment_key: str,
    session: SessionDep,
    unit_id: Annotated[str, Query(min_length=1, max_length=200)],
    path: Annotated[str | None, Query(max_length=2000)] = None,
) -> Assignment:
    """The unit's variant, the same one a GrowthBook SDK with this key, seed, weights and
    coverage would pick; ``variant_key: null`` when the unit is not in the experiment."""
    variant = await service.assign_unit(session, experiment_key, unit_id, path)
    return Assignment(experiment_key=experiment_key, variant_key=variant)


def _intake(request: Request) -> Intake:
    return request.app.state.intake


async def _single(
    request: Request, event: EventIn, user_agent: str | None, response: Response, kind: str | None
) -> Accepted:
    (verdict,) = await _intake(request).ingest([event], user_agent=user_agent, event_type=kind)
    if verdict.reason is not None:
        response.headers[REJECTED_HEADER] = verdict.reason
    return Accepted(accepted=verdict.accepted)


@public_router.post("/api/experiments/event", status_code=status.HTTP_202_ACCEPTED)
async def ingest_event(
    event: EventIn, request: Request, response: Response, user_agent: UserAgent = None
) -> Accepted:
    """One event (``event_name``: cta_click, form_start, form_submit, conversion or
    impression). ``accepted: false`` stores nothing; the reason is in ``X-Event-Rejected``."""
    return await _single(request, event, user_agent, response, None)


@public_router.post("/api/experiments/impression", status_code=status.HTTP_202_ACCEPTED)
async def ingest_impression(
    event: EventIn, request: Request, response: Response, user_agent: UserAgent = None
) -> Accepted:
    """An exposure: the unit saw its variant."""
    return await _single(request, event, user_agent, response, "impression")


@public_router.post("/api/experiments/batch", status_code=status.HTTP_202_ACCEPTED)
async def ingest_batch(body: BatchIn, request: Request, user_agent: UserAgent = None) -> BatchOut:
    """Up to 1,000 events; each gets its own verdict and reason, in order."""
    verdicts = await _intake(request).ingest(body.events, user_agent=user_agent)
    accepted = sum(v.accepted for v in verdicts)
    return BatchOut(
        accepted=accepted,
        rejected=len(verdicts) - accepted,
        results=[BatchItem(accepted=v.accepted, reason=v.reason) for v in verdicts],
    )
