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
from typing import Any

from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.auth.principal import Principal
from promptlooper.errors import BadRequest, Conflict, NotFound
from promptlooper.training import service
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.layout import checkpoint_exists, checkpoint_root
from promptlooper.training.models import TrainingCheckpoint, TrainingRun
from promptlooper.training.registry import ModelEntry, ModelRegistry
from promptlooper.training.schemas import (
    CheckpointPublic,
    LoadResult,
    LoadState,
    Operation,
    OptimResult,
    OptimStep,
    PrimitiveBody,
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
FutureKey = tuple[uuid.UUID, str]
"""A future's owner and id: ids are chosen per user (a client may pick its own), so two users'
ids never clash and one cannot learn another's."""


@dataclass(frozen=True, slots=True)
class _Target:
    """What a call on a run needs, kept for ``TARGET_TTL`` so that the calls of a training
    loop skip the database: the owner (checked on every call), the base model and the
    adapter's spec."""

    owner_id: uuid.UUID
    entry: ModelEntry
    spec: RunSpec
    looked_up: float


@dataclass(frozen=True, slots=True)
class _Work:
    """A primitive ready to queue: the worker's method and arguments, and what to record (a
    step's metrics, a checkpoint's row) once it is done."""

    method: str
    args: tuple[Any, ...]
    record: Finisher | None = None


@dataclass(slots=True)
class Pending:
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
        self._futures: dict[FutureKey, Pending] = {}
        self._finished_at: deque[tuple[float, FutureKey]] = deque()
        """Finished futures, oldest first: pruning looks only at the ones that expired."""
        self._targets: dict[uuid.UUID, _Target] = {}

    # --- the primitives -------------------------------------------------------------------------

    async def call(
        self,
        principal: Principal,
        run_id: uuid.UUID,
        operation: Operation,
        body: PrimitiveBody,
        *,
        wait: bool = True,
        future_id: str | None = None,
    ) -> Any:
        """Run a primitive on the run's worker: its result, or with ``wait=False`` the id of
        the future it will be filed under (``future_id`` when the caller chose one)."""
        target = await self._target(principal, run_id)
        work = await self._prepare(principal, run_id, operation, body)
        if wait:
            return await self._start(target, work)
        future_id = self._future_id(principal, future_id)  # refused before anything is queued
        self._file(future_id, principal, operation, self._start(target, work))
        return future_id

    async def check_access(self, principal: Principal, run_id: uuid.UUID) -> None:
        """404 for an unknown run, 403 for another user's."""
        await self._target(principal, run_id)

    async def _prepare(
        self, principal: Principal, run_id: uuid.UUID, operation: Operation, body: PrimitiveBody
    ) -> _Work:
        """What the worker is to run and what to record once it is done; checks that need the
        database (a checkpoint to load) happen here, before anything is queued."""
        if isinstance(body, OptimStep):

            async def step(result: OptimResult) -> OptimResult:
                self.steps.add(run_id, result)
                return result

            return _Work(operation, (body,), step)
        if isinstance(body, SaveState):
            if body.name is not None and not body.overwrite:
                await self._ensure_unsaved(run_id, body.name)
            return self._save(run_id, body)
        if isinstance(body, LoadState):
            return await self._load(principal, run_id, body)
        return _Work(operation, (body,))

    def _save(self, run_id: uuid.UUID, body: SaveState) -> _Work:
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

        return _Work("save_state", (body.kind, folder, body.name, body.overwrite), record)

    async def _ensure_unsaved(self, run_id: uuid.UUID, name: str) -> None:
        """Refuse a save over an existing checkpoint before it is queued (the worker checks
        again when it saves: a default name is only known there, and saves may race)."""
        async with self.sessionmaker() as session:
            saved = await session.scalar(
                select(TrainingCheckpoint.id).where(
                    TrainingCheckpoint.run_id == run_id, TrainingCheckpoint.name == name
                )
            )
        if saved is not None:
            raise Conflict(checkpoint_exists(name))

    async def _load(self, principal: Principal, run_id: uuid.UUID, body: LoadState) -> _Work:
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

        return _Work("load_state", (Path(checkpoint.path), body.with_optimizer), record)

    def checkpoint_root(self, run_id: uuid.UUID) -> Path:
        """Where a run's checkpoints live: ``DATA_DIR/training/<run id>/<checkpoint name>``,
        which is also how ``local:<run id>@<name>`` finds them in a sweep."""
        return checkpoint_root(self.data_dir, run_id)

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
        pending = self._futures.get((principal.user_id, future_id))
        if pending is None:
            raise NotFound("Future not found (unknown, or its result has expired)")
        if wait > 0 and not pending.task.done():
            await asyncio.wait({pending.task}, timeout=wait)
        if not pending.task.done():
            return pending.operation, None
        return pending.operation, pending.task.result()

    # --- plumbing -------------------------------------------------------------------------------

    async def _target(self, principal: Principal, run_id: uuid.UUID) -> _Target:
        target = self._targets.get(run_id)
        if target is None or time.monotonic() - target.looked_up > TARGET_TTL:
            target = await self._look_up(principal, run_id, target)
        principal.ensure_can_access(target.owner_id, "training run")
        return target

    def _start(self, target: _Target, work: _Work) -> asyncio.Task[BaseModel]:
        submitted = self.backend.submit(target.entry, work.method, target.spec, *work.args)
        return asyncio.create_task(self._finish(submitted, work.record))

    def _future_id(self, principal: Principal, chosen: str | None) -> str:
        self._prune()
        if chosen is None:
            return uuid.uuid4().hex
        if (principal.user_id, chosen) in self._futures:
            raise Conflict(f"future id {chosen!r} is already in use")
        return chosen

    def _file(
        self, future_id: str, principal: Principal, operation: str, task: asyncio.Task[BaseModel]
    ) -> None:
        """Keep the running call's outcome under ``future_id`` for its caller to fetch."""
        key = (principal.user_id, future_id)
        self._futures[key] = Pending(operation, task)
        task.add_done_callback(lambda _t: self._finished(key))

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

    def _finished(self, key: FutureKey) -> None:
        pending = self._futures.get(key)
        if pending is not None:
            self._finished_at.append((time.monotonic(), key))
            if not pending.task.cancelled():
                pending.task.exception()  # retrieved later by the client; not "never retrieved"

    def _prune(self) -> None:
        cutoff = time.monotonic() - FUTURE_TTL
        while self._finished_at and self._finished_at[0][0] < cutoff:
            self._futures.pop(self._finished_at.popleft()[1], None)
