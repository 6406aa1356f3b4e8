"""The online experiments pages (admins only, as in the API): the registry with the site-wide
switch, the definition forms, start, stop and archive, and the results page where a decision
is made."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.deps import SessionDep
from promptlooper.errors import Conflict, Invalid
from promptlooper.online import (
    definitions,
    display,
    guardrails,
    offline,
    results,
    service,
    timeline,
)
from promptlooper.online.models import OnlineExperiment
from promptlooper.online.schemas import (
    EVENT_TYPES,
    ExperimentCreate,
    ExperimentUpdate,
    SettingsBody,
)
from promptlooper.variants.offline import sweep_scores
from promptlooper.web import online_results as view
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import FORM_ERROR, form_fields, validate
from promptlooper.web.online_forms import (
    BANDIT,
    GUARDRAIL,
    SECONDARY,
    THRESHOLDS,
    definition_data,
    form_of,
    place_errors,
    refusal,
    row_count,
)
from promptlooper.web.render import page, redirect
from promptlooper.web.session import PREFIX, Viewer, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
HOME = PREFIX + "/online"
DEFAULT_FORM = {
    "enabled": "on",
    "status": "draft",
    "coverage": "100",
    "primary_metric": "conversion",
    "type": "ab",
    "variants.0.variant_key": "control",
    "variants.0.label": "Original",
    "variants.0.allocation": "50",
    "variants.1.allocation": "50",
    "control": "0",
}


def _admin(viewer: Viewer) -> None:
    viewer.principal.ensure_admin()


def _changed(request: Request) -> None:
    """Ingestion judges events against a snapshot of the registry: renew it now."""
    request.app.state.intake.invalidate()


@router.get(HOME)
async def registry(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    _admin(viewer)
    experiments = await service.list_experiments(session, include_archived=True)
    live = [e for e in experiments if e.archived_at is None]
    return page(
        request,
        "online/list.html",
        viewer,
        area="online",
        settings=await service.site_settings(session),
        live=live,
        health=await results.health_summaries(session, live),
        archived=[e for e in experiments if e.archived_at is not None],
        is_live=service.is_live,
    )


@router.post(HOME + "/settings")
async def switch(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    _admin(viewer)
    form = await form_fields(request)
    enabled = form.get("experiments_enabled") == "on"
    await service.save_settings(
        session, SettingsBody.model_validate({"experiments_enabled": enabled})
    )
    await session.commit()
    _changed(request)
    return redirect(
        request,
        HOME,
        "Online experiments switched on: running experiments assign and count events again."
        if enabled
        else "Online experiments switched off site-wide: nothing is assigned and every event "
        "is refused until they are switched on.",
    )


async def _form_page(
    request: Request,
    viewer: Viewer,
    session: AsyncSession,
    form: dict[str, str],
    errors: dict[str, str],
    *,
    experiment: OnlineExperiment | None = None,
    changes: list[str] | None = None,
    status: int = 200,
) -> Response:
    defined = await definitions.list_metrics(session)
    return page(
        request,
        "online/form.html",
        viewer,
        status_code=status,
        area="online",
        experiment=experiment,
        form=form,
        errors=errors,
        rows=row_count(form),
        changes=changes or [],
        metric_names=[*EVENT_TYPES, *(m.name for m in defined)],
        metric_notes={
            **dict.fromkeys(EVENT_TYPES, "built-in event"),
            **{m.name: display.metric_summary(m) for m in defined},
        },
        directions={m.name: m.direction for m in defined},
        guardrail=GUARDRAIL,
        secondary=SECONDARY,
        thresholds=THRESHOLDS,
        bandit=BANDIT,
    )


@router.get(HOME + "/new")
async def new_experiment(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    _admin(viewer)
    return await _form_page(request, viewer, session, dict(DEFAULT_FORM), {})


@router.post(HOME + "/new")
async def create_experiment(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    _admin(viewer)
    form = await form_fields(request)
    if form.get("add_variant"):
        return await _form_page(request, viewer, session, form, {})
    data, rows = definition_data(form)
    body, errors = validate(ExperimentCreate, data)
    errors = place_errors(errors, rows)
    if body is not None:
        try:
            experiment = await service.create_experiment(
                session, body, request.app.state.known_agent_variants
            )
        except (Conflict, Invalid) as exc:
            await session.rollback()
            errors = refusal(exc, rows)
        else:
            await session.commit()
            _changed(request)
            return redirect(
                request,
                f"{HOME}/{experiment.experiment_key}",
                f"Experiment {experiment.name} created ({experiment.status}).",
            )
    return await _form_page(request, viewer, session, form, errors, status=422)


@router.get(HOME + "/{key}/edit")
async def edit_experiment(
    request: Request, key: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    _admin(viewer)
    experiment = await service.get_experiment(session, key)
    form = form_of(experiment) | {"version": service.experiment_version(experiment)}
    return await _form_page(request, viewer, session, form, {}, experiment=experiment)


@router.post(HOME + "/{key}/edit")
async def update_experiment(
    request: Request, key: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    _admin(viewer)
    form = await form_fields(request)
    # Locked before the version check, so no edit commits between the check and the save.
    experiment = await service.lock_experiment(session, key)
    if form.get("add_variant"):
        return await _form_page(request, viewer, session, form, {}, experiment=experiment)
    data, rows = definition_data(form)
    data.pop("experiment_key", None)
    status = 422
    try:
        service.check_version(experiment, form.get("version", ""))
    except Conflict as exc:
        body, errors, status = None, {FORM_ERROR: exc.message}, 409
    else:
        body, errors = validate(ExperimentUpdate, data)
        errors = place_errors(errors, rows)
    if body is not None:
        try:
            # Refused before the confirmation below: confirming an edit that cannot be saved
            # would only lead to the refusal one step later.
            service.keep_type(experiment, body)
        except Conflict as exc:
            body, errors = None, refusal(exc, rows)
    if body is not None:
        changes = (
            service.assignment_changes(experiment, body) if service.is_live(experiment) else []
        )
        if changes and form.get("confirmed") != "yes":
            # Nothing saved yet: say what the edit does to assignment and ask again.
            return await _form_page(
                request, viewer, session, form, {}, experiment=experiment, changes=changes
            )
        try:
            await service.update_experiment(
                session, key, body, request.app.state.known_agent_variants
            )
        except (Conflict, Invalid) as exc:
            await session.rollback()
            errors = refusal(exc, rows)
        else:
            await session.commit()
            _changed(request)
            return redirect(request, f"{HOME}/{key}", f"Experiment {body.name} saved.")
    experiment = await service.get_experiment(session, key)
    return await _form_page(
        request, viewer, session, form, errors, experiment=experiment, status=status
    )


@router.post(HOME + "/{key}/status")
async def change_status(
    request: Request, key: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    _admin(viewer)
    wanted = (await form_fields(request)).get("status")
    if wanted not in ("running", "stopped"):
        raise Invalid("status must be running or stopped")
    experiment = await service.set_status(session, key, wanted)
    await session.commit()
    _changed(request)
    said = (
        "started: it assigns units and counts their events"
        if wanted == "running"
        else "stopped: no unit is assigned and events are refused; results stay"
    )
    return redirect(request, f"{HOME}/{key}", f"Experiment {experiment.name} {said}.")


@router.post(HOME + "/{key}/archive")
async def archive(request: Request, key: str, viewer: ViewerDep, session: SessionDep) -> Response:
    _admin(viewer)
    experiment = await service.archive_experiment(session, key)
    await session.commit()
    _changed(request)
    return redirect(
        request,
        HOME,
        f"Experiment {experiment.name} archived: stopped and off the public list; its results "
        "stay readable.",
    )


@router.post(HOME + "/{key}/arms/{variant}/resume")
async def resume_arm(
    request: Request, key: str, variant: str, viewer: ViewerDep, session: SessionDep
) -> Response:
    _admin(viewer)
    await guardrails.resume(session, key, variant, viewer.principal.username)
    await session.commit()
    return redirect(request, f"{HOME}/{key}", f"Arm {variant} resumed: its visitors see it again.")


@router.get(HOME + "/{key}")
async def results_page(
    request: Request,
    key: str,
    viewer: ViewerDep,
    session: SessionDep,
    correction: Literal["holm", "bh"] = "holm",
) -> Response:
    _admin(viewer)
    experiment = await service.get_experiment(session, key)
    (result,) = await results.compute(session, [key], correction=correction)
    await offline.attach(session, experiment, result, sweep_scores)
    keys = [v["variant_key"] for v in experiment.variants]
    series = await timeline.over_time(session, key, keys)
    rows = view.comparisons(experiment, result)
    exposure_chart, lift_chart = view.charts(experiment, series)
    return page(
        request,
        "online/results.html",
        viewer,
        area="online",
        experiment=experiment,
        result=result,
        headline=view.headline(experiment, result, rows),
        banners=view.banners(result),
        forest=view.forest(rows),
        metrics=view.METRICS,
        metric_count=len({row.metric for row in rows}),
        family=display.family(result["multiplicity"]),
        plot_width=view.PLOT_WIDTH,
        percent=view.percent,
        labels={v["variant_key"]: v.get("label") or v["variant_key"] for v in experiment.variants},
        has_data=view.has_data(result),
        days=len(series["days"]),
        exposure_chart=exposure_chart,
        lift_chart=lift_chart,
        lift_metric=view.lift_metric(series),
        no_lift=None if lift_chart else view.no_lift(experiment, series),
        correction=correction,
        settings=await service.site_settings(session),
        is_live=service.is_live(experiment),
    )
