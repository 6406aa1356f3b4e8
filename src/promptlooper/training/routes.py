"""``/api/training``: models, runs and the Tinker-style primitives.

Every primitive takes ``?wait=false`` to return at once with a future id (202), and ``POST
/runs/{id}/queue`` queues several in one request; ``GET /api/training/futures/{id}`` then
answers 202 while a call runs, the result when done, or the error the call would have answered
with.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from promptlooper.auth.deps import PrincipalDep
from promptlooper.auth.principal import Principal
from promptlooper.db.deps import Offset, SessionDep
from promptlooper.errors import PromptLooperError, http_status, validation_detail
from promptlooper.training import service
from promptlooper.training.registry import ModelRegistry
from promptlooper.training.schemas import (
    CheckpointList,
    CheckpointPublic,
    FuturePublic,
    LoadResult,
    LoadState,
    LossRequest,
    LossResult,
    MetricsPublic,
    ModelList,
    OptimResult,
    OptimStep,
    QueuedCall,
    QueueRefusal,
    QueueRequest,
    QueueResult,
    RunCreate,
    RunList,
    RunPublic,
    SampleRequest,
    SampleResult,
    SaveState,
    StepMetric,
)
from promptlooper.training.trainer import Trainer

router = APIRouter(prefix="/api/training", tags=["training"])

WaitQuery = Annotated[
    bool, Query(description="false: answer 202 with a future id instead of waiting")
]
PENDING: dict[int | str, dict[str, Any]] = {202: {"description": "Queued; poll the future"}}


def _trainer(request: Request) -> Trainer:
    return request.app.state.trainer  # type: ignore[no-any-return]


def _registry(request: Request) -> ModelRegistry:
    return _trainer(request).registry


def _answer(outcome: BaseModel | str, operation: str) -> Any:
    if isinstance(outcome, str):
        ticket = FuturePublic(future_id=outcome, operation=operation, status="pending")
        return JSONResponse(ticket.model_dump(), status_code=status.HTTP_202_ACCEPTED)
    return outcome


@router.get("/models")
async def list_models(request: Request, _principal: PrincipalDep) -> ModelList:
    return service.list_models(_registry(request))


@router.post("/runs", status_code=status.HTTP_201_CREATED)
async def create_run(
    body: RunCreate, request: Request, principal: PrincipalDep, session: SessionDep
) -> RunPublic:
    run = await service.create_run(session, principal, _registry(request), body)
    await session.commit()
    return RunPublic.model_validate(run)


@router.get("/runs")
async def list_runs(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> RunList:
    await _trainer(request).steps.flush()  # the step counters as acknowledged
    runs, total = await service.list_runs(session, principal, limit=limit, offset=offset)
    return RunList(data=[RunPublic.model_validate(r) for r in runs], count=total)


@router.get("/runs/{run_id}")
async def get_run(
    run_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> RunPublic:
    await _trainer(request).steps.flush()
    return RunPublic.model_validate(await service.get_run(session, principal, run_id))


@router.delete("/runs/{run_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_run(run_id: uuid.UUID, request: Request, principal: PrincipalDep) -> None:
    await _trainer(request).delete_run(principal, run_id)


@router.get("/runs/{run_id}/metrics")
async def get_metrics(
    run_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> MetricsPublic:
    await _trainer(request).steps.flush()
    run = await service.get_run(session, principal, run_id)
    steps = await service.steps(session, run)
    return MetricsPublic(run_id=run.id, steps=[StepMetric.model_validate(s) for s in steps])


@router.get("/runs/{run_id}/checkpoints")
async def list_checkpoints(
    run_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> CheckpointList:
    run = await service.get_run(session, principal, run_id)
    rows = await service.checkpoints(session, run)
    return CheckpointList(data=[CheckpointPublic.model_validate(c) for c in rows], count=len(rows))


@router.post("/runs/{run_id}/forward_backward", responses=PENDING)
async def forward_backward(
    run_id: uuid.UUID,
    body: LossRequest,
    request: Request,
    principal: PrincipalDep,
    wait: WaitQuery = True,
) -> LossResult:
    """Compute the loss and add its gradients to the run's accumulated ones."""
    outcome = await _trainer(request).call(principal, run_id, "forward_backward", body, wait=wait)
    return _answer(outcome, "forward_backward")  # type: ignore[no-any-return]


@router.post("/runs/{run_id}/forward", responses=PENDING)
async def forward(
    run_id: uuid.UUID,
    body: LossRequest,
    request: Request,
    principal: PrincipalDep,
    wait: WaitQuery = True,
) -> LossResult:
    """The loss alone, without gradients (evaluation)."""
    outcome = await _trainer(request).call(principal, run_id, "forward", body, wait=wait)
    return _answer(outcome, "forward")  # type: ignore[no-any-return]


@router.post("/runs/{run_id}/optim_step", responses=PENDING)
async def optim_step(
    run_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    body: OptimStep | None = None,
    wait: WaitQuery = True,
) -> OptimResult:
    """Apply the accumulated gradients with AdamW; 400 when there are none."""
    outcome = await _trainer(request).call(
        principal, run_id, "optim_step", body or OptimStep(), wait=wait
    )
    return _answer(outcome, "optim_step")  # type: ignore[no-any-return]


@router.post("/runs/{run_id}/sample", responses=PENDING)
async def sample(
    run_id: uuid.UUID,
    body: SampleRequest,
    request: Request,
    principal: PrincipalDep,
    wait: WaitQuery = True,
) -> SampleResult:
    outcome = await _trainer(request).call(principal, run_id, "sample", body, wait=wait)
    return _answer(outcome, "sample")  # type: ignore[no-any-return]


@router.post("/runs/{run_id}/save_state", status_code=status.HTTP_201_CREATED, responses=PENDING)
async def save_state(
    run_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    body: SaveState | None = None,
    wait: WaitQuery = True,
) -> CheckpointPublic:
    """Save the adapter (with optimizer state, to resume) or a merged standalone model."""
    outcome = await _trainer(request).call(
        principal, run_id, "save_state", body or SaveState(), wait=wait
    )
    return _answer(outcome, "save_state")  # type: ignore[no-any-return]


@router.post("/runs/{run_id}/load_state", responses=PENDING)
async def load_state(
    run_id: uuid.UUID,
    body: LoadState,
    request: Request,
    principal: PrincipalDep,
    wait: WaitQuery = True,
) -> LoadResult:
    outcome = await _trainer(request).call(principal, run_id, "load_state", body, wait=wait)
    return _answer(outcome, "load_state")  # type: ignore[no-any-return]


@router.post("/runs/{run_id}/queue", status_code=status.HTTP_202_ACCEPTED)
async def queue_calls(
    run_id: uuid.UUID, body: QueueRequest, request: Request, principal: PrincipalDep
) -> QueueResult:
    """Queue several primitives in one request, as if each had been sent alone with
    ``?wait=false``, in order: a call that would have been refused alone ends the batch (its
    status code and detail in ``refused``), and the calls after it are not queued."""
    trainer = _trainer(request)
    await trainer.check_access(principal, run_id)
    futures: list[FuturePublic] = []
    for index, raw in enumerate(body.calls):
        try:
            futures.append(await _queue(trainer, principal, run_id, raw))
        except _Refused as exc:
            refused = QueueRefusal(index=index, status_code=exc.status_code, detail=exc.detail)
            return QueueResult(futures=futures, refused=refused)
    return QueueResult(futures=futures)


class _Refused(Exception):
    """A call of a batch refused, with what it would have been answered alone."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(status_code, detail)
        self.status_code = status_code
        self.detail = detail


async def _queue(
    trainer: Trainer, principal: Principal, run_id: uuid.UUID, raw: dict[str, Any]
) -> FuturePublic:
    try:
        call = QueuedCall.model_validate(raw)
    except ValidationError as exc:
        raise _Refused(422, validation_detail(exc.errors())) from exc
    try:
        primitive = call.parsed_body()
    except ValidationError as exc:  # located as its own route would locate it
        raise _Refused(422, validation_detail(exc.errors(), ("body",))) from exc
    try:
        future_id = await trainer.call(
            principal, run_id, call.operation, primitive, wait=False, future_id=call.future_id
        )
    except PromptLooperError as exc:
        raise _Refused(http_status(exc), exc.message) from exc
    return FuturePublic(future_id=future_id, operation=call.operation, status="pending")


@router.get("/futures/{future_id}", responses=PENDING)
async def retrieve_future(
    future_id: str,
    request: Request,
    response: Response,
    principal: PrincipalDep,
    wait_seconds: Annotated[float, Query(ge=0, le=300)] = 0,
) -> FuturePublic:
    """The call's result; with ``wait_seconds``, the answer waits up to that long for it."""
    operation, result = await _trainer(request).retrieve(principal, future_id, wait=wait_seconds)
    if result is None:
        response.status_code = status.HTTP_202_ACCEPTED
        return FuturePublic(future_id=future_id, operation=operation, status="pending")
    return FuturePublic(
        future_id=future_id,
        operation=operation,
        status="done",
        result=result.model_dump(mode="json"),
    )
