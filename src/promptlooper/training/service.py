"""Training runs: create, list, read, delete, with the ownership rule of every domain (another
user's run is 403, an unknown one 404), and the model listing."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.auth.principal import Principal
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


async def list_runs(
    session: AsyncSession, principal: Principal, *, limit: int, offset: int
) -> tuple[list[TrainingRun], int]:
    """The caller's own runs, newest first (an admin's own too: runs are personal)."""
    where = TrainingRun.owner_id == principal.user_id
    total = await session.scalar(select(func.count()).select_from(TrainingRun).where(where))
    rows = await session.scalars(
        select(TrainingRun)
        .where(where)
        .order_by(TrainingRun.created_at.desc())
        .limit(limit)
        .offset(offset)
    )
    return list(rows), int(total or 0)


async def latest_steps(
    session: AsyncSession, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, TrainingStep]:
    """The last recorded step of each run that has one, in one query: a list of runs shows
    each one's latest loss without a query per run."""
    if not run_ids:
        return {}
    last = (
        select(TrainingStep.run_id, func.max(TrainingStep.step).label("step"))
        .where(TrainingStep.run_id.in_(run_ids))
        .group_by(TrainingStep.run_id)
        .subquery()
    )
    rows = await session.scalars(
        select(TrainingStep).join(
            last, (TrainingStep.run_id == last.c.run_id) & (TrainingStep.step == last.c.step)
        )
    )
    return {row.run_id: row for row in rows}


ACTIVE_WINDOW = timedelta(minutes=5)
"""A run whose last step is younger than this is said to be training: runs are driven step by
step by their clients, so there is no other sign that one is still going."""


def activity(latest: TrainingStep | None, now: datetime) -> str:
    """``not started``, ``training`` (a step within the last few minutes) or ``idle``."""
    if latest is None:
        return "not started"
    return "training" if now - latest.created_at < ACTIVE_WINDOW else "idle"


async def steps(session: AsyncSession, run: TrainingRun) -> list[TrainingStep]:
    rows = await session.scalars(
        select(TrainingStep).where(TrainingStep.run_id == run.id).order_by(TrainingStep.step)
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
