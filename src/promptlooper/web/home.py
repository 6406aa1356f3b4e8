"""``/ui/``: where a user lands after login. It says first what needs attention (running
sweeps, an unhealthy online experiment), then shows their projects with their latest sweeps
and their agents, the running online experiments (admins only, as in the API) and their
latest training runs, each a link to its page, and keeps the form for a new project.

Every section is read in a fixed number of queries whatever the number of rows: the latest
sweeps, their progress and leaders' scores, the agents and what they serve, the experiments'
health and the runs' latest steps are each fetched for all listed items at once."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
from promptlooper.db.deps import SessionDep
from promptlooper.errors import Conflict
from promptlooper.online import results as online_results
from promptlooper.online import service as online
from promptlooper.projects import service as projects
from promptlooper.projects.models import Project
from promptlooper.projects.schemas import ProjectCreate
from promptlooper.sweeps import service as sweeps
from promptlooper.training import service as training
from promptlooper.variants import service as agents
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import form_fields, validate
from promptlooper.web.render import page, redirect
from promptlooper.web.session import PREFIX, ViewerDep
from promptlooper.web.training import EXAMPLE_COMMAND

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 20
SWEEPS_PER_PROJECT = 3
AGENTS_PER_PROJECT = 5
TRAINING_RUNS = 5


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


@router.get(PREFIX)
async def ui_root() -> RedirectResponse:
    return RedirectResponse(PREFIX + "/", status_code=307)


@dataclass
class _ProjectSection:
    project: Project
    sweeps: list[dict[str, Any]]
    sweep_total: int
    agents: list[dict[str, Any]]
    agent_total: int


async def _project_sections(session: AsyncSession, rows: list[Project]) -> list[_ProjectSection]:
    """Each project with its latest sweeps (status, run counts, leader's score) and its agents
    (with the variant each serves)."""
    ids = [p.id for p in rows]
    latest, sweep_totals = await sweeps.latest_experiments(
        session, ids, per_project=SWEEPS_PER_PROJECT
    )
    listed = [e for found in latest.values() for e in found]
    counts = await sweeps.progress(session, [e.id for e in listed])
    leaders = await sweeps.leader_scores(session, listed)
    found_agents, agent_totals = await agents.agents_in(
        session, ids, per_project=AGENTS_PER_PROJECT
    )
    serving = await agents.active_variants(
        session, [a.id for found in found_agents.values() for a in found]
    )
    return [
        _ProjectSection(
            project=p,
            sweeps=[
                {"experiment": e, "counts": counts[e.id], "leader": leaders[e.id]}
                for e in latest.get(p.id, [])
            ],
            sweep_total=sweep_totals.get(p.id, 0),
            agents=[{"agent": a, "variant": serving.get(a.id)} for a in found_agents.get(p.id, [])],
            agent_total=agent_totals.get(p.id, 0),
        )
        for p in rows
    ]


async def _online_section(
    session: AsyncSession, principal: Principal
) -> list[dict[str, Any]] | None:
    """The running online experiments with their health, or None for a non-admin: the
    experiments are admin-only, as in the API."""
    if not principal.is_admin:
        return None
    running = [e for e in await online.list_experiments(session) if e.status == "running"]
    health = await online_results.health_summaries(session, running)
    return [{"experiment": e, "health": health[e.experiment_key]} for e in running]


async def _training_section(
    session: AsyncSession, principal: Principal
) -> tuple[list[dict[str, Any]], int]:
    runs, total = await training.list_runs(session, principal, limit=TRAINING_RUNS, offset=0)
    latest = await training.latest_steps(session, [r.id for r in runs])
    now = datetime.now(UTC)
    return [
        {
            "run": r,
            "latest": latest.get(r.id),
            "activity": training.run_status(latest.get(r.id), now),
        }
        for r in runs
    ], total


def _attention(
    sections: list[_ProjectSection], experiments: list[dict[str, Any]] | None
) -> tuple[str, str]:
    """The page's answer: what needs a look now, in one sentence, and how loudly to say it
    (``bad`` for results not to trust, ``warn`` for sweeps that stopped short, else ``""``)."""
    listed = [item["experiment"].current_status for s in sections for item in s.sweeps]
    untrusted = [
        item["experiment"].name for item in experiments or [] if item["health"].srm_mismatch
    ]
    parts = [
        f"{n} sweep{'s' if n != 1 else ''} {status}"
        for status in ("running", "failed", "interrupted")
        if (n := listed.count(status))
    ]
    if untrusted:
        parts.append(
            f"sample-ratio mismatch in {', '.join(untrusted)}: do not trust "
            + ("its results" if len(untrusted) == 1 else "their results")
        )
    if parts:
        stopped = "failed" in listed or "interrupted" in listed
        kind = "bad" if untrusted else "warn" if stopped else ""
        return kind, "Needs attention: " + "; ".join(parts) + "."
    if experiments:
        return "", (
            "Nothing needs attention: no sweep is running or failed, and no running online "
            "experiment shows a sample-ratio mismatch."
        )
    return "", "Nothing needs attention: no sweep is running or failed."


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
    sections = await _project_sections(session, rows)
    experiments = await _online_section(session, viewer.principal)
    runs, run_total = await _training_section(session, viewer.principal)
    return page(
        request,
        "home.html",
        viewer,
        status_code=status,
        attention=_attention(sections, experiments),
        sections=sections,
        total=total,
        experiments=experiments,
        runs=runs,
        run_total=run_total,
        train_command=EXAMPLE_COMMAND,
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
