"""A project's sweeps: the list with live progress, a new sweep from a pasted or uploaded
document, and start / cancel / resume, done as the API does them."""

from __future__ import annotations

import uuid
from typing import Any

import yaml
from fastapi import APIRouter, Query, Request, Response
from starlette.datastructures import UploadFile

from promptlooper.db.deps import ReadSessionDep, SessionDep
from promptlooper.errors import Conflict, Invalid
from promptlooper.projects import service as projects
from promptlooper.sweeps import service
from promptlooper.sweeps.execution import SweepJobs
from promptlooper.sweeps.spec import SweepSpec, reject_file_references
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import form_fields, validate
from promptlooper.web.render import page, redirect, templates
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
templates.globals["sweep_finished"] = service.finished
PAGE_SIZE = 25
EXAMPLE_COMMAND = "promptlooper sweep run examples/ticket-triage/sweep.yaml"


def _jobs(request: Request) -> SweepJobs:
    return request.app.state.sweep_jobs


@router.get(PREFIX + "/projects/{project_id}/sweeps")
async def experiments(
    request: Request,
    project_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    """The project's experiments, newest first, with run counts; while one runs, the list
    refreshes itself (htmx polls this page and keeps its ``#experiments`` part)."""
    project = await projects.get_project(session, viewer.principal, project_id)
    rows, total = await service.list_experiments(
        session,
        viewer.principal,
        project_id,
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
    )
    counts = await service.progress(session, [e.id for e in rows])
    items = [{"experiment": e, "counts": counts[e.id]} for e in rows]
    return page(
        request,
        "sweeps/list.html",
        viewer,
        project=project,
        area="sweeps",
        items=items,
        total=total,
        page_number=page_number,
        page_size=PAGE_SIZE,
        running=any(e.current_status == "running" for e in rows),
        example_command=EXAMPLE_COMMAND,
    )


async def _new_form(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    project_id: uuid.UUID,
    *,
    form: dict[str, str] | None = None,
    problems: list[str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    project = await projects.get_project(session, viewer.principal, project_id)
    if problems:
        errors = {"document": "The document was refused; see the problems above."}
    limit = request.app.state.settings.max_body_document_bytes
    return page(
        request,
        "sweeps/new.html",
        viewer,
        status_code=status,
        project=project,
        area="sweeps",
        form=form or {},
        errors=errors or {},
        problems=problems or [],
        upload_limit=mib(limit) if limit else None,
        example_command=EXAMPLE_COMMAND,
    )


def mib(size: int) -> str:
    """A byte count as people read a limit: "8 MiB", "0.5 MiB"."""
    return f"{size / (1 << 20):.3g} MiB"


async def too_large_form(
    request: Request, viewer: ViewerDep, session: SessionDep, project_id: uuid.UUID, limit: int
) -> Response:
    """The new-sweep form again after a body over the limit (the body-limit middleware refused
    it unread, so nothing typed can be kept), with the reason beside the upload field."""
    return await _new_form(
        request,
        viewer,
        session,
        project_id,
        errors={"file": f"The file is larger than {mib(limit)}, the most a sweep document may be."},
        status=413,
    )


@router.get(PREFIX + "/projects/{project_id}/sweeps/new")
async def new_experiment(
    request: Request, project_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    return await _new_form(request, viewer, session, project_id)


async def _document_text(request: Request, form: dict[str, str]) -> str:
    """The uploaded file's text when one was chosen, else the pasted text. (The body-limit
    middleware bounds the file: this route's limit is the API's for a sweep document.)"""
    upload = (await request.form()).get("file")
    if isinstance(upload, UploadFile) and upload.filename:
        raw = await upload.read()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise Invalid("file: not UTF-8 text") from exc
    return form.get("document", "")


def _parse(text: str) -> tuple[SweepSpec | None, list[str]]:
    """The document as the API's request schema reads it, or every problem it has."""
    try:
        document: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return None, [f"Not valid YAML or JSON: {' '.join(str(exc).split())}"]
    if not isinstance(document, dict):
        return None, [
            "A sweep document is a mapping (YAML or JSON object) with a name, a "
            "dataset and a parameter space."
        ]
    spec, errors = validate(SweepSpec, document)
    if spec is None:
        return None, [f"{where}: {message}" for where, message in errors.items()]
    reject_file_references(document)
    return spec, []


@router.post(PREFIX + "/projects/{project_id}/sweeps/new")
async def create_experiment(
    request: Request, project_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """Create a draft experiment; refusals are listed above the document, which is kept."""
    form = await form_fields(request)
    try:
        form["document"] = await _document_text(request, form)
        spec, problems = _parse(form["document"])
        if spec is not None:
            experiment = await service.create_experiment(
                session,
                viewer.principal,
                project_id,
                spec,
                policy=request.app.state.provider_policy,
                max_runs=request.app.state.settings.sweep_max_runs,
                allow_python=request.app.state.settings.allow_python_callables,
            )
            await session.commit()
            return redirect(
                request,
                f"{PREFIX}/sweeps/{experiment.id}",
                f"Experiment {experiment.name} created as a draft of "
                f"{experiment.total_runs:,} runs; start it when ready.",
            )
    except Invalid as exc:
        problems = [exc.message]
    return await _new_form(
        request, viewer, session, project_id, form=form, problems=problems, status=422
    )


def _back(experiment_id: uuid.UUID, project_id: uuid.UUID, form: dict[str, str]) -> str:
    """Where an action returns to: the list it was pressed on, or the experiment's page."""
    if form.get("back") == "list":
        return f"{PREFIX}/projects/{project_id}/sweeps"
    return f"{PREFIX}/sweeps/{experiment_id}"


@router.post(PREFIX + "/sweeps/{experiment_id}/start")
async def start(
    request: Request, experiment_id: uuid.UUID, viewer: ViewerDep, session: ReadSessionDep
) -> Response:
    """Start, or resume what is not completed yet: the API's start, providers judged again."""
    form = await form_fields(request)
    experiment = await service.get_experiment(session, viewer.principal, experiment_id)
    back = _back(experiment.id, experiment.project_id, form)
    try:
        await service.startable_providers(
            session,
            experiment,
            policy=request.app.state.provider_policy,
            allow_python=request.app.state.settings.allow_python_callables,
        )
    except Invalid as exc:
        return redirect(request, back, f"Not started: {exc.message}")
    started = await _jobs(request).start(experiment.id)
    notice = "started" if started else "was already running"
    return redirect(request, back, f"Experiment {experiment.name} {notice}.")


@router.post(PREFIX + "/sweeps/{experiment_id}/cancel")
async def cancel(
    request: Request, experiment_id: uuid.UUID, viewer: ViewerDep, session: ReadSessionDep
) -> Response:
    """Stop it; finished runs are kept and a later start resumes."""
    form = await form_fields(request)
    experiment = await service.get_experiment(session, viewer.principal, experiment_id)
    back = _back(experiment.id, experiment.project_id, form)
    try:
        await _jobs(request).cancel(experiment.id)
    except Conflict as exc:
        return redirect(request, back, exc.message)
    return redirect(
        request, back, f"Experiment {experiment.name} cancelled; finished runs are kept."
    )
