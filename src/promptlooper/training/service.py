"""Training runs: create, list, read, delete, with the ownership rule of every domain (another
user's run is 403, an unknown one 404), and the model listing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import ColumnElement, Row, Subquery, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased

from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.errors import Invalid, NotFound
from promptlooper.training.models import TrainingCheckpoint, TrainingRun, TrainingStep
from promptlooper.training.registry import ModelRegistry
from promptlooper.training.schemas import LoraPublic, ModelList, ModelPublic, RunCreate


def list_models(registry: ModelRegistry) -> ModelList:
    models = [
        ModelPublic(
            name=e.name,
            description=e.description,
            source=e.source.kind,
            available=e.source.available(),
            max_seq_len=e.max_seq_len,
            chat_template=e.chat_template,
            lora=LoraPublic(**e.lora.model_dump()),
            lora_modules=e.lora.modules,
        )
        for e in registry.entries()
    ]
    return ModelList(data=models, count=len(models))


async def create_run(
    session: AsyncSession, principal: Principal, registry: ModelRegistry, body: RunCreate
) -> TrainingRun:
    defaults = registry.get(body.base_model).lora
    unknown = defaults.unknown_modules(body.lora_target_modules or [])
    if unknown:
        raise Invalid(
            f"lora_target_modules: {body.base_model} has no layer {unknown[0]!r} to adapt; "
            f"choose among: {', '.join(defaults.modules or [])}"
        )
    lora = {
        "rank": body.lora_rank if body.lora_rank is not None else defaults.rank,
        "alpha": body.lora_alpha if body.lora_alpha is not None else defaults.alpha,
        "dropout": body.lora_dropout if body.lora_dropout is not None else defaults.dropout,
        "target_modules": body.lora_target_modules or defaults.target_modules,
    }
    run = TrainingRun(
        id=uuid.uuid4(),
        owner_id=principal.user_id,
        name=body.name,
        base_model=body.base_model,
        lora=lora,
        seed=body.seed,
        step=0,
    )
    session.add(run)
    await session.flush()
    return run


async def get_run(session: AsyncSession, principal: Principal, run_id: uuid.UUID) -> TrainingRun:
    run = await session.get(TrainingRun, run_id)
    if run is None:
        raise NotFound("Training run not found")
    principal.ensure_can_access(run.owner_id, "training run")
    return run


RunSort = Literal["created", "name", "base_model", "step", "loss", "status"]
_RUN_ORDER = {
    "created": TrainingRun.created_at,
    "name": TrainingRun.name,
    "base_model": TrainingRun.base_model,
    "step": TrainingRun.step,
}


def _latest_step_rows(where: ColumnElement[bool]) -> Subquery:
    """The last logged step of each run that ``where`` picks, as a subquery to join: the runs
    list shows, and sorts by, its loss and (through its time) the run's status."""
    last = (
        select(TrainingStep.run_id, func.max(TrainingStep.step).label("step"))
        .where(where)
        .group_by(TrainingStep.run_id)
        .subquery()
    )
    return (
        select(TrainingStep)
        .join(last, (TrainingStep.run_id == last.c.run_id) & (TrainingStep.step == last.c.step))
        .subquery()
    )


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    *,
    limit: int,
    offset: int,
    sort: RunSort = "created",
    descending: bool = True,
) -> tuple[list[TrainingRun], int]:
    """The caller's own runs, newest first unless sorted otherwise (an admin's own too: runs
    are personal); ties fall back to newest first, so a page never reorders between reads.
    By status, runs order by their last step's time, as ``run_status`` reads it: training,
    then idle, then new ones (without a step) when descending; runs without a loss come last
    when sorted by loss."""
    where = TrainingRun.owner_id == principal.user_id
    total = await session.scalar(select(func.count()).select_from(TrainingRun).where(where))
    query = select(TrainingRun).where(where)
    if sort in ("loss", "status"):
        mine = select(TrainingRun.id).where(where).scalar_subquery()
        latest = _latest_step_rows(TrainingStep.run_id.in_(mine))
        query = query.outerjoin(latest, latest.c.run_id == TrainingRun.id)
        column = latest.c.loss if sort == "loss" else latest.c.created_at
        ordered = column.desc() if descending else column.asc()
        ordered = ordered.nulls_last() if sort == "loss" or descending else ordered.nulls_first()
    else:
        column = _RUN_ORDER[sort]
        ordered = column.desc() if descending else column.asc()
    rows = await session.scalars(
        query.order_by(ordered, TrainingRun.created_at.desc(), TrainingRun.id)
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


async def latest_steps(
    session: AsyncSession, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, TrainingStep]:
    """Each run's last logged step (runs without one are left out): one query for a page."""
    if not run_ids:
        return {}
    latest = aliased(TrainingStep, _latest_step_rows(TrainingStep.run_id.in_(run_ids)))
    rows = await session.scalars(select(latest))
    return {row.run_id: row for row in rows}


ACTIVE_WINDOW = timedelta(seconds=60)
"""A run whose last step is younger than this is training: a loop steps far more often."""

RunStatus = Literal["new", "training", "idle"]


def run_status(latest: TrainingStep | None, now: datetime | None = None) -> RunStatus:
    """``new`` before its first step, ``training`` while steps keep coming, else ``idle``.
    A run has no lifecycle of its own (any client may step it at any time): this is what
    its step log says."""
    if latest is None:
        return "new"
    return "training" if (now or utcnow()) - latest.created_at < ACTIVE_WINDOW else "idle"


async def steps(session: AsyncSession, run: TrainingRun) -> list[TrainingStep]:
    rows = await session.scalars(
        select(TrainingStep).where(TrainingStep.run_id == run.id).order_by(TrainingStep.step)
    )
    return list(rows)


async def step_series(session: AsyncSession, run: TrainingRun) -> list[Row[Any]]:
    """Every step's ``step, loss, tokens, grad_norm, learning_rate`` in step order, as plain
    rows: a chart of a long run reads thousands, which as ORM objects cost far more to load
    than the rest of its page."""
    rows = await session.execute(
        select(
            TrainingStep.step,
            TrainingStep.loss,
            TrainingStep.tokens,
            TrainingStep.grad_norm,
            TrainingStep.learning_rate,
        )
        .where(TrainingStep.run_id == run.id)
        .order_by(TrainingStep.step)
    )
    return list(rows)


async def checkpoints(session: AsyncSession, run: TrainingRun) -> list[TrainingCheckpoint]:
    rows = await session.scalars(
        select(TrainingCheckpoint)
        .where(TrainingCheckpoint.run_id == run.id)
        .order_by(TrainingCheckpoint.created_at)
    )
    return list(rows)


async def find_checkpoint(session: AsyncSession, run: TrainingRun, name: str) -> TrainingCheckpoint:
    row = await session.scalar(
        select(TrainingCheckpoint).where(
            TrainingCheckpoint.run_id == run.id, TrainingCheckpoint.name == name
        )
    )
    if row is None:
        raise NotFound(f"Run {run.id} has no checkpoint {name!r}")
    return row
