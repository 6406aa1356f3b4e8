"""``/ui/``: where a user lands after login: their projects, and a form for a new one."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse

from promptlooper.db.deps import SessionDep
from promptlooper.errors import Conflict
from promptlooper.projects import service as projects
from promptlooper.projects.schemas import ProjectCreate
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import form_fields, validate
from promptlooper.web.render import page, redirect
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 50


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


@router.get(PREFIX)
async def ui_root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


async def _home(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    page_number: int,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    rows, total = await projects.list_projects(
        session, viewer.principal, limit=PAGE_SIZE, offset=(page_number - 1) * PAGE_SIZE
    )
    return page(
        request,
        "home.html",
        viewer,
        status_code=status,
        projects=rows,
        total=total,
        page_number=page_number,
        page_size=PAGE_SIZE,
        form=form or {},
        errors=errors or {},
    )


@router.get(PREFIX + "/")
async def home(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    return await _home(request, viewer, session, page_number)


@router.post(PREFIX + "/projects")
async def create_project(request: Request, viewer: ViewerDep, session: SessionDep) -> Response:
    form = await form_fields(request)
    body, errors = validate(ProjectCreate, form)
    if body is not None:
        try:
            project = await projects.create_project(
                session, viewer.principal, body.name, body.description
            )
        except Conflict as exc:
            errors = {"name": exc.message}
        else:
            await session.commit()
            return redirect(
                request, f"{PREFIX}/projects/{project.id}", f"Project {project.name} created."
            )
    return await _home(request, viewer, session, 1, form=form, errors=errors, status=422)


@router.get(PREFIX + "/projects/{project_id}")
async def project(project_id: uuid.UUID, viewer: ViewerDep, session: SessionDep) -> Response:
    """A project opens on its sweeps, the view people come for most."""
    await projects.get_project(session, viewer.principal, project_id)
    return RedirectResponse(f"{PREFIX}/projects/{project_id}/sweeps", status_code=303)
