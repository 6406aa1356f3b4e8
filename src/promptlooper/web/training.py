"""Training: the models a run can fine-tune, the user's runs, and a run's page with its curves
(refreshed while it trains), its checkpoints and a box to sample from it, done through the
same service and trainer as ``/api/training``."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.db.deps import ReadSessionDep, SessionDep
from promptlooper.errors import PromptLooperError
from promptlooper.training import service
from promptlooper.training.models import TrainingRun
from promptlooper.training.schemas import SampleRequest, SampleResult
from promptlooper.training.trainer import Trainer
from promptlooper.web.curves import MAX_POINTS, chart_specs, summarise
from promptlooper.web.errors import PageRoute
from promptlooper.web.forms import FORM_ERROR, form_fields, validate
from promptlooper.web.render import page
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
PAGE_SIZE = 25
POLL_SECONDS = 3
EXAMPLE_COMMAND = "promptlooper train sft --model tiny-test --data train.jsonl --epochs 3 --lr 1e-3"
EXAMPLE_LINE = (
    '{"messages": [{"role": "user", "content": "My card was charged twice"}, '
    '{"role": "assistant", "content": "billing"}]}'
)
"""One line of ``train.jsonl`` (``{"text": ...}`` lines work too)."""
Scale = Literal["linear", "log"]
Smooth = Annotated[float, Query(ge=0, le=0.99)]
"""The curves' exponential smoothing (TensorBoard's weight), kept in the URL so that a
reload or a shared link shows the curves as they were read."""
SAMPLE_DEFAULTS = {"max_tokens": "64", "temperature": "1.0", "top_p": "1.0", "format": "text"}
FORMATS = ("text", "chat")
"""How the sample form sends its prompt: completed as is, or as a user's chat message."""


def _trainer(request: Request) -> Trainer:
    return request.app.state.trainer  # type: ignore[no-any-return]


@router.get(PREFIX + "/training")
async def runs(
    request: Request,
    viewer: ViewerDep,
    session: SessionDep,
    sort: service.RunSort = "created",
    order: Literal["asc", "desc"] = "desc",
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    """The registry's models and the viewer's runs with where each one is."""
    trainer = _trainer(request)
    await trainer.steps.flush()  # the step counters as acknowledged, as the API reads them
    rows, total = await service.list_runs(
        session,
        viewer.principal,
        limit=PAGE_SIZE,
        offset=(page_number - 1) * PAGE_SIZE,
        sort=sort,
        descending=order == "desc",
    )
    latest = await service.latest_steps(session, [r.id for r in rows])
    items = [
        {"run": r, "latest": latest.get(r.id), "status": service.run_status(latest.get(r.id))}
        for r in rows
    ]
    return page(
        request,
        "training/list.html",
        viewer,
        area="training",
        models=service.list_models(trainer.registry).data,
        items=items,
        total=total,
        page_number=page_number,
        page_size=PAGE_SIZE,
        sort=sort,
        order=order,
        example_command=EXAMPLE_COMMAND,
        example_line=EXAMPLE_LINE,
    )


def _view(scale: Scale, smooth: float) -> dict[str, str]:
    """The run page's view in its query string: what its links and forms carry along."""
    params = {"scale": scale} if scale != "linear" else {}
    return params | ({"smooth": f"{smooth:g}"} if smooth else {})


async def _curves(
    session: AsyncSession, run: TrainingRun, scale: Scale, smooth: float = 0
) -> dict[str, Any]:
    """What the polled part of a run's page shows: the answer and the charts."""
    steps = await service.step_series(session, run)
    latest = (await service.latest_steps(session, [run.id])).get(run.id)
    return {
        "run": run,
        "steps_count": len(steps),
        "summary": summarise(steps),
        "latest": latest,
        "status": service.run_status(latest),
        "total_tokens": sum(s.tokens for s in steps),
        "charts": chart_specs(steps, log=scale == "log"),
        "downsampled": len(steps) > MAX_POINTS,
        "max_points": MAX_POINTS,
        "scale": scale,
        "smooth": smooth,
        "view": _view(scale, smooth),
        "poll_seconds": POLL_SECONDS,
    }


async def _run_page(
    request: Request,
    viewer: ViewerDep,
    session: AsyncSession,
    run_id: uuid.UUID,
    scale: Scale,
    smooth: float,
    *,
    form: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    sampled: SampleResult | None = None,
    status: int = 200,
) -> Response:
    await _trainer(request).steps.flush()
    run = await service.get_run(session, viewer.principal, run_id)
    return page(
        request,
        "training/run.html",
        viewer,
        status_code=status,
        area="training",
        checkpoints=await service.checkpoints(session, run),
        form={**SAMPLE_DEFAULTS, **(form or {})},
        errors=errors or {},
        sampled=sampled,
        **await _curves(session, run, scale, smooth),
    )


@router.get(PREFIX + "/training/runs/{run_id}")
async def run_page(
    request: Request,
    run_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    scale: Scale = "linear",
    smooth: Smooth = 0,
) -> Response:
    return await _run_page(request, viewer, session, run_id, scale, smooth)


@router.get(PREFIX + "/training/runs/{run_id}/curves")
async def curves(
    request: Request,
    run_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    scale: Scale = "linear",
    smooth: Smooth = 0,
) -> Response:
    """The answer and the charts alone, which the run's page polls while the run trains."""
    await _trainer(request).steps.flush()
    run = await service.get_run(session, viewer.principal, run_id)
    curves = await _curves(session, run, scale, smooth)
    return page(request, "training/_curves.html", viewer, **curves)


def _sample_body(form: dict[str, str]) -> dict[str, Any]:
    """The API's sample request from the form: one prompt, as text or as a chat (with an
    optional system message); blank settings take the API's defaults."""
    prompt = form.get("prompt", "")
    if form.get("format") == "chat":
        messages = [{"role": "user", "content": prompt}]
        if form.get("system", "").strip():
            messages.insert(0, {"role": "system", "content": form["system"]})
        body: dict[str, Any] = {"prompts": [messages]}
    else:
        body = {"prompts": [prompt]}
    for name in ("max_tokens", "temperature", "top_p", "seed"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    body["stop"] = [line for line in form.get("stop", "").split("\n") if line]
    return body


def _sample_errors(errors: dict[str, str]) -> dict[str, str]:
    """Problems keyed by the form's fields (``prompts.0`` is the prompt, ``stop.1`` a line)."""
    keyed: dict[str, str] = {}
    for where, message in errors.items():
        field = where.split(".")[0]
        keyed.setdefault({"prompts": "prompt"}.get(field, field), message)
    return keyed


@router.post(PREFIX + "/training/runs/{run_id}/sample")
async def sample(
    request: Request,
    run_id: uuid.UUID,
    viewer: ViewerDep,
    session: ReadSessionDep,
    scale: Scale = "linear",
    smooth: Smooth = 0,
) -> Response:
    """Sample once from the run as it is now, wait for the answer and show it verbatim."""
    form = await form_fields(request)
    run = await service.get_run(session, viewer.principal, run_id)
    body, errors = validate(SampleRequest, _sample_body(form))
    errors = _sample_errors(errors)
    if not form.get("prompt", "").strip():
        errors.setdefault("prompt", "Write a prompt to send to the model.")
    if form.get("format", "text") not in FORMATS:
        errors["format"] = "Send the prompt as plain text or as a chat."
    sampled: SampleResult | None = None
    if body is not None and not errors:
        try:
            result = await _trainer(request).call(viewer.principal, run.id, "sample", body)
            assert isinstance(result, SampleResult)
            sampled = result
        except PromptLooperError as exc:
            errors[FORM_ERROR] = exc.message
    return await _run_page(
        request,
        viewer,
        session,
        run.id,
        scale,
        smooth,
        form=form,
        errors=errors,
        sampled=sampled,
        status=422 if errors else 200,
    )
