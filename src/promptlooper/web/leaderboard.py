"""An experiment's page: who leads, the leaderboard (sortable, paginated), the parameter
space, failures, exports, and promoting a config to an agent's variant."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import TypeAdapter, ValidationError

from promptlooper.auth.principal import Principal
from promptlooper.db.deps import SessionDep
from promptlooper.errors import Conflict, Invalid, NotFound
from promptlooper.projects import service as projects
from promptlooper.sweeps import service
from promptlooper.sweeps.models import Experiment
from promptlooper.sweeps.search import store as search_store
from promptlooper.sweeps.summary import ConfigSummary, ExperimentSummary
from promptlooper.sweeps.verdict import answer
from promptlooper.variants import promotion
from promptlooper.variants import service as variants
from promptlooper.variants.schemas import Name, PromoteRequest
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import FORM_ERROR, form_fields, validate
from promptlooper.web.render import is_htmx, page, redirect
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 50
FAILURES_SHOWN = 10
AGENTS_OFFERED = 200
SPACE_SHOWN = 20
"""Values shown per parameter: a space of 1,000 prompts would otherwise fill the page."""

SORTS: dict[str, Callable[[ConfigSummary], Any]] = {
    "score": lambda c: c.score,
    "n": lambda c: c.completed,
    "failed": lambda c: c.failed,
    "tokens_in": lambda c: c.tokens_in,
    "tokens_out": lambda c: c.tokens_out,
    "cost": lambda c: c.cost,
    "latency": lambda c: c.p50_latency_ms,
}
"""Leaderboard columns by the key ``?sort=`` names; ``scorer:NAME`` sorts by a scorer's mean."""


def dataset_size(experiment: Experiment) -> int:
    """Rows in the stored (self-contained) sweep document's dataset."""
    dataset = (experiment.spec or {}).get("dataset") or {}
    return len(dataset.get("rows") or [])


def ranked_rows(summary: ExperimentSummary) -> list[tuple[int, ConfigSummary]]:
    """Each config with its rank (its number on every page: "Config #3"), best first."""
    return list(enumerate(summary.configs, start=1))


def _sorted(
    rows: list[tuple[int, ConfigSummary]], sort: str, order: str
) -> list[tuple[int, ConfigSummary]]:
    if sort.startswith("scorer:"):
        name = sort.removeprefix("scorer:")
        key: Callable[[ConfigSummary], Any] = lambda c: c.scores.get(name)  # noqa: E731
    elif sort in SORTS:
        key = SORTS[sort]
    else:
        return rows if order == "asc" else rows[::-1]
    present = [row for row in rows if key(row[1]) is not None]
    missing = [row for row in rows if key(row[1]) is None]
    present.sort(key=lambda row: key(row[1]), reverse=order == "desc")
    return present + missing  # configs without the value go last either way


async def experiment_page(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    experiment: Experiment,
    *,
    sort: str = "rank",
    order: Literal["asc", "desc"] = "asc",
    page_number: int = 1,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    principal: Principal = viewer.principal
    project = await projects.get_project(session, principal, experiment.project_id)
    counts = (await service.progress(session, [experiment.id]))[experiment.id]
    summary = await service.summary(session, experiment)
    failures, failed_total = await service.list_runs(
        session, principal, experiment.id, status="failed", limit=FAILURES_SHOWN
    )
    agents, _ = await variants.list_agents(
        session, principal, experiment.project_id, limit=AGENTS_OFFERED
    )
    rows = _sorted(ranked_rows(summary), sort, order)
    start = (page_number - 1) * PAGE_SIZE
    return page(
        request,
        "sweeps/experiment.html",
        viewer,
        status_code=status,
        project=project,
        area="sweeps",
        experiment=experiment,
        counts=counts,
        summary=summary,
        answer=answer(summary),
        eliminated=await search_store.eliminated(session, experiment.id, summary),
        rows=rows[start : start + PAGE_SIZE],
        repeated=any(c.repeats > 1 for c in summary.configs),
        total_configs=len(rows),
        parameters=list(experiment.parameter_space or {}),
        space_shown=SPACE_SHOWN,
        scorers=sorted(summary.scorers),
        dataset_size=dataset_size(experiment),
        failures=failures,
        failed_total=failed_total,
        agents=agents,
        sort=sort,
        order=order,
        page_number=page_number,
        page_size=PAGE_SIZE,
        form=form or {"config_hash": summary.ranked[0].config_hash if summary.ranked else ""},
        errors=errors or {},
    )


@router.get(PREFIX + "/sweeps/{experiment_id}")
async def experiment(
    request: Request,
    experiment_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    sort: str = Query("rank", max_length=200),
    order: Literal["asc", "desc"] = "asc",
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    found = await service.get_experiment(session, viewer.principal, experiment_id)
    if is_htmx(request) and found.current_status != "running":
        # The progress poll of a sweep that has just ended: reload the whole page, so the
        # leaderboard shows the final results.
        return Response(status_code=204, headers={"HX-Refresh": "true"})
    return await experiment_page(
        request, viewer, session, found, sort=sort, order=order, page_number=page_number
    )


def _problem(exc: Invalid | Conflict | NotFound, fields: tuple[str, ...]) -> dict[str, str]:
    """A refusal beside the field its message names (``config_hash: ...``), else on the form."""
    where, _, rest = exc.message.partition(": ")
    if where in fields and rest:
        return {where: rest}
    if isinstance(exc, NotFound) and exc.message.startswith("No scored config"):
        return {"config_hash": exc.message}
    return {FORM_ERROR: exc.message}


@router.post(PREFIX + "/sweeps/{experiment_id}/promote")
async def promote(
    request: Request, experiment_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """A config becomes a variant of an existing agent of the project, or of a new agent
    whose base config is that config too (the variant still overrides those fields, as
    ``promotion.into_new_agent`` does); then the variant's page. Nothing is saved on a
    refusal."""
    found = await service.get_experiment(session, viewer.principal, experiment_id)
    form = await form_fields(request)
    new_agent = form.get("new_agent", "").strip()
    agent_id = form.get("agent_id", "").strip()
    body, errors = validate(
        PromoteRequest,
        {
            "experiment_id": str(found.id),
            "config_hash": form.get("config_hash") or None,
            "name": form.get("name") or None,
        },
    )
    if bool(new_agent) == bool(agent_id):
        errors["agent_id"] = "Choose an agent of the project, or name a new one (not both)."
    elif new_agent:
        try:
            TypeAdapter(Name).validate_python(new_agent)
        except ValidationError:
            errors["new_agent"] = "A name of 1 to 200 characters."
    else:
        try:
            uuid.UUID(agent_id)
        except ValueError:
            errors["agent_id"] = "Choose an agent from the list."
    if body is not None and not errors:
        try:
            if new_agent:
                variant, _ = await promotion.into_new_agent(
                    session,
                    viewer.principal,
                    found.project_id,
                    found.id,
                    agent_name=new_agent,
                    config_hash=body.config_hash,
                    name=body.name,
                )
            else:
                variant, _ = await promotion.from_experiment(
                    session,
                    viewer.principal,
                    uuid.UUID(agent_id),
                    found.id,
                    config_hash=body.config_hash,
                    name=body.name,
                )
            await session.commit()
            return redirect(
                request,
                f"{PREFIX}/agents/{variant.agent_id}/variants/{variant.id}",
                f"Variant {variant.name} created from experiment {found.name}.",
            )
        except (Invalid, Conflict, NotFound) as exc:
            await session.rollback()
            fields = ("config_hash", "name", "agent_id", "new_agent")
            errors = _problem(exc, fields)
            if exc.message == "Agent not found":
                errors = {"agent_id": "Choose an agent of this project."}
    found = await service.get_experiment(session, viewer.principal, experiment_id)
    return await experiment_page(
        request, viewer, session, found, form=form, errors=errors, status=422
    )
