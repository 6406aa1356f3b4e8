"""The training primitives as a service: look up and authorise the run, queue the call on the
base model's worker, then record what it changed (metrics, checkpoints, the step counter).

A call can be awaited, or submitted without waiting: the caller then gets a future id and
fetches the outcome later. Either way the work runs to completion and its bookkeeping is
written, even when the client has gone away.
"""

from __future__ import annotations

import asyncio
import shutil
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth.principal import Principal
from promptlooper.errors import BadRequest, NotFound
from promptlooper.training import service
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.layout import checkpoint_root
from promptlooper.training.models import TrainingCheckpoint, TrainingRun
from promptlooper.training.registry import ModelEntry, ModelRegistry
from promptlooper.training.schemas import (
    CheckpointPublic,
    LoadResult,
    LoadState,
    LossRequest,
    OptimResult,
    OptimStep,
    SampleRequest,
    SaveState,
)
from promptlooper.training.steplog import StepLog

FUTURE_TTL = 3600.0
"""Seconds a finished future's outcome is kept for the client to fetch."""
TARGET_TTL = 2.0
"""Seconds a run looked up for one call serves the next ones without asking the database: a
run deleted by another process (the CLI) stops answering, and its adapter is dropped, within
that time."""

Finisher = Callable[[Any], Awaitable[BaseModel]]
Computation = Literal["forward_backward", "forward", "sample"]


@dataclass(frozen=True, slots=True)
class _Target:
    """What a call on a run needs, kept for ``TARGET_TTL`` so that the calls of a training
    loop skip the database: the owner (checked on every call), the base model and the
    adapter's spec."""

    owner_id: uuid.UUID
    entry: ModelEntry
    spec: RunSpec
    looked_up: float


@dataclass(slots=True)
class Pending:
    owner_id: uuid.UUID
    operation: str
    task: asyncio.Task[BaseModel]


class Trainer:
    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        backend: TrainingBackend,
        registry: ModelRegistry,
        data_dir: Path,
    ) -> None:
        self.sessionmaker = sessionmaker
        self.backend = backend
        self.registry = registry
        self.data_dir = data_dir
        self.steps = StepLog(sessionmaker)
        self._futures: dict[str, Pending] = {}
        self._finished_at: deque[tuple[float, str]] = deque()
        """Finished futures, oldest first: pruning looks only at the ones that expired."""
        self._targets: dict[uuid.UUID, _Target] = {}

    # --- the primitives -------------------------------------------------------------------------

    async def compute(
        self,
        principal: Principal,
        run_id: uuid.UUID,
        operation: Computation,
        body: LossRequest | SampleRequest,
        *,
        wait: bool = True,
    ) -> BaseModel | str:
        """``forward_backward``, ``forward`` or ``sample``: calls that leave no record."""
        return await self._call(principal, run_id, operation, (body,), wait=wait)

    async def optim_step(
        self, principal: Principal, run_id: uuid.UUID, body: OptimStep, *, wait: bool = True
    ) -> BaseModel | str:
        async def record(result: OptimResult) -> OptimResult:
            self.steps.add(run_id, result)
            return result

        return await self._call(principal, run_id, "optim_step", (body,), record, wait=wait)

    async def save_state(
        self, principal: Principal, run_id: uuid.UUID, body: SaveState, *, wait: bool = True
    ) -> BaseModel | str:
        folder = self.checkpoint_root(run_id)

        async def record(saved: tuple[int, str]) -> CheckpointPublic:
            step, name = saved
            async with self.sessionmaker() as session:
                await session.execute(
                    delete(TrainingCheckpoint).where(
                        TrainingCheckpoint.run_id == run_id, TrainingCheckpoint.name == name
                    )
                )
                checkpoint = TrainingCheckpoint(
                    run_id=run_id, name=name, kind=body.kind, step=step, path=str(folder / name)
                )
                self._targets.pop(run_id, None)  # the spec's resume_from is now this checkpoint
                session.add(checkpoint)
                await session.commit()
                return CheckpointPublic.model_validate(checkpoint)

        args = (body.kind, folder, body.name)
        return await self._call(principal, run_id, "save_state", args, record, wait=wait)

    def checkpoint_root(self, run_id: uuid.UUID) -> Path:
        """Where a run's checkpoints live: ``DATA_DIR/training/<run id>/<checkpoint name>``,
        which is also how ``local:<run id>@<name>`` finds them in a sweep."""
        return checkpoint_root(self.data_dir, run_id)

    async def load_state(
        self, principal: Principal, run_id: uuid.UUID, body: LoadState, *, wait: bool = True
    ) -> BaseModel | str:
        async with self.sessionmaker() as session:
            run = await service.get_run(session, principal, run_id)
            source_run = (
                await service.get_run(session, principal, body.run_id) if body.run_id else run
            )
            if source_run.base_model != run.base_model:
                raise BadRequest(
                    f"checkpoint is for {source_run.base_model}, this run trains {run.base_model}"
                )
            checkpoint = await service.find_checkpoint(session, source_run, body.checkpoint)
            if checkpoint.kind != "adapter":
                raise BadRequest("only adapter checkpoints can be loaded into a run")

        async def record(step: int) -> LoadResult:
            await self.steps.rewind(run_id, step)
            return LoadResult(step=step, with_optimizer=body.with_optimizer)

        args = (Path(checkpoint.path), body.with_optimizer)
        return await self._call(principal, run_id, "load_state", args, record, wait=wait)

    async def delete_run(self, principal: Principal, run_id: uuid.UUID) -> None:
        async with self.sessionmaker() as session:
            run = await service.get_run(session, principal, run_id)
            entry = self.registry.get(run.base_model)
            self._targets.pop(run_id, None)
            dropped = self.backend.forget(entry, run.adapter_key)
            if dropped is not None:
                await asyncio.wrap_future(dropped)
            await session.delete(run)
            await session.commit()
        shutil.rmtree(self.checkpoint_root(run_id), ignore_errors=True)

    async def close(self) -> None:
        """Write what the step log holds; the backend is the caller's to shut down."""
        await self.steps.flush()

    # --- futures --------------------------------------------------------------------------------

    async def retrieve(
        self, principal: Principal, future_id: str, *, wait: float = 0.0
    ) -> tuple[str, BaseModel | None]:
        """``(operation, result)``, waiting up to ``wait`` seconds for it; the result is None
        while the call is pending, and a failed call raises its error here, as the call itself
        would have."""
        pending = self._futures.get(future_id)
        if pending is None:
            raise NotFound("Future not found (unknown, or its result has expired)")
        principal.ensure_can_access(pending.owner_id, "future")
        if wait > 0 and not pending.task.done():
            await asyncio.wait({pending.task}, timeout=wait)
        if not pending.task.done():
            return pending.operation, None
        return pending.operation, pending.task.result()

    # --- plumbing -------------------------------------------------------------------------------

    async def _call(
        self,
        principal: Principal,
        run_id: uuid.UUID,
        method: str,
        args: tuple[Any, ...],
        record: Finisher | None = None,
        *,
        wait: bool,
    ) -> BaseModel | str:
        target = self._targets.get(run_id)
        if target is None or time.monotonic() - target.looked_up > TARGET_TTL:
            target = await self._look_up(principal, run_id, target)
        principal.ensure_can_access(target.owner_id, "training run")
        work = self.backend.submit(target.entry, method, target.spec, *args)
        task = asyncio.create_task(self._finish(work, record))
        if wait:
            return await task
        self._prune()
        future_id = uuid.uuid4().hex
        self._futures[future_id] = Pending(principal.user_id, method, task)
        task.add_done_callback(lambda _t: self._finished(future_id))
        return future_id

    async def _look_up(
        self, principal: Principal, run_id: uuid.UUID, known: _Target | None
    ) -> _Target:
        async with self.sessionmaker() as session:
            try:
                run = await service.get_run(session, principal, run_id)
            except NotFound:
                if known is not None:  # deleted elsewhere: free what this process held
                    self._targets.pop(run_id, None)
                    self.backend.forget(known.entry, known.spec.key)
                raise
            entry = self.registry.get(run.base_model)
            target = _Target(run.owner_id, entry, await self._spec(session, run), time.monotonic())
        self._targets[run_id] = target
        return target

    async def _finish(self, work: Any, record: Finisher | None) -> BaseModel:
        result = await asyncio.wrap_future(work)
        if record is None:
            return result  # type: ignore[no-any-return]
        return await record(result)

    async def _spec(self, session: AsyncSession, run: TrainingRun) -> RunSpec:
        latest = await session.scalar(
            select(TrainingCheckpoint.path)
            .where(TrainingCheckpoint.run_id == run.id, TrainingCheckpoint.kind == "adapter")
            .order_by(TrainingCheckpoint.created_at.desc())
            .limit(1)
        )
        return RunSpec(
            key=run.adapter_key,
            seed=run.seed,
            rank=int(run.lora["rank"]),
            alpha=float(run.lora["alpha"]),
            dropout=float(run.lora["dropout"]),
            target_modules=tuple(run.lora["target_modules"]),
            resume_from=latest,
        )

    def _finished(self, future_id: str) -> None:
        pending = self._futures.get(future_id)
        if pending is not None:
            self._finished_at.append((time.monotonic(), future_id))
            if not pending.task.cancelled():
                pending.task.exception()  # retrieved later by the client; not "never retrieved"

    def _prune(self) -> None:
        cutoff = time.monotonic() - FUTURE_TTL
        while self._finished_at and self._finished_at[0][0] < cutoff:
            self._futures.pop(self._finished_at.popleft()[1], None)
