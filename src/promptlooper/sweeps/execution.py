"""Running an experiment durably: the same path for ``promptlooper sweep run`` and the API.

Every run is a row created once (a second start inserts nothing), and only runs that are not
completed are executed. A crash or Ctrl-C loses at most the runs in flight; partial results of
failed or abandoned runs are cleared before they run again, so nothing is ever duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper.db.base import utcnow
from promptlooper.db.engine import create_sessionmaker
from promptlooper.db.upsert import insert_ignore
from promptlooper.errors import Conflict, NotFound
from promptlooper.events import EventBus
from promptlooper.sweeps.credentials.service import provider_access
from promptlooper.sweeps.engine.executor import Progress, Providers, execute
from promptlooper.sweeps.engine.persistence import RunOutcome
from promptlooper.sweeps.engine.runner import RunTask, StageDef, first_stage_key
from promptlooper.sweeps.engine.space import config_hash
from promptlooper.sweeps.lease import Lease, LeaseLost, cancel_unowned
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.plan import SweepPlan, compile_plan
from promptlooper.sweeps.providers import ProviderPolicy
from promptlooper.sweeps.scorers.base import ScorerContext
from promptlooper.sweeps.spec import parse_spec
from promptlooper.sweeps.store import CacheBound, SqlResponseCache, SqlRunSink
from promptlooper.values import storable

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress, RunOutcome], None]


@dataclass
class ExecutionOptions:
    policy: ProviderPolicy
    """What the experiment's providers may use, judged again at every start."""
    concurrency: int | None = None
    use_cache: bool | None = None
    """False: neither read nor fill the cache; None: as the experiment's last start did."""
    allow_python: bool = False
    cache_bound: CacheBound | None = None
    lease_seconds: float = 30.0


@dataclass
class ExecutionResult:
    experiment_id: uuid.UUID
    status: str
    progress: Progress
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    skipped_completed: int = 0


async def prepare_runs(session: AsyncSession, experiment: Experiment, plan: SweepPlan) -> None:
    """Create every run row (idempotently) and reset unfinished runs for a clean re-run."""
    now = utcnow()
    rows = []
    for config in plan.configs:
        digest = config_hash(config)
        stages = plan.stages_for(config)
        for row_index, row in enumerate(plan.rows):
            executable = plan.run_config(config, row, stages)
            for repeat in range(plan.spec.repeats):
                rows.append(
                    {
                        "id": uuid.uuid4(),
                        "experiment_id": experiment.id,
                        "config_hash": digest,
                        "parameters": config,
                        "config": executable,
                        "row_index": row_index,
                        "repeat": repeat,
                        "status": "pending",
                        "tokens_in": 0,
                        "tokens_out": 0,
                        "cost": 0.0,
                        "cached": False,
                        "created_at": now,
                    }
                )
    await insert_ignore(session, Run.__table__, rows)  # type: ignore[arg-type]
    unfinished = select(Run.id).where(Run.experiment_id == experiment.id, Run.status != "completed")
    await session.execute(delete(StageResult).where(StageResult.run_id.in_(unfinished)))
    await session.execute(delete(Score).where(Score.run_id.in_(unfinished)))
    await session.execute(
        update(Run)
        .where(Run.experiment_id == experiment.id, Run.status != "completed")
        .values(status="pending", error=None, started_at=None, completed_at=None, sanitized=False)
    )


async def pending_tasks(
    session: AsyncSession, experiment: Experiment, plan: SweepPlan, *, use_cache: bool
) -> list[RunTask]:
    query = (
        select(Run.id, Run.config_hash, Run.parameters, Run.row_index, Run.repeat)
        .where(Run.experiment_id == experiment.id, Run.status == "pending")
        .order_by(Run.config_hash, Run.row_index, Run.repeat)
    )
    stages: dict[str, list[StageDef]] = {}
    tasks = []
    for run_id, digest, parameters, row_index, repeat in await session.execute(query):
        if digest not in stages:
            stages[digest] = plan.stages_for(parameters)
        tasks.append(
            RunTask(
                run_id=run_id,
                experiment_id=experiment.id,
                stages=stages[digest],
                config=parameters,
                row=plan.rows[row_index],
                # Repeats beyond the first measure variance: they must not replay the cache.
                use_cache=use_cache and repeat == 0,
            )
        )
    return tasks


def describe(exc: BaseException) -> str:
    """An error as an experiment records it, by type and message: for a group (a task group
    wraps what its workers raised), the first exception inside it and how many more."""
    more = 0
    while isinstance(exc, BaseExceptionGroup):
        more += len(exc.exceptions) - 1
        exc = exc.exceptions[0]
    message = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return storable(message + (f" (and {more} more)" if more else ""))


async def _take_lease(
    sessionmaker: async_sessionmaker[AsyncSession],
    experiment_id: uuid.UUID,
    options: ExecutionOptions,
) -> Lease:
    lease = await Lease.acquire(
        sessionmaker, experiment_id, options.lease_seconds, use_cache=options.use_cache
    )
    if lease is not None:
        return lease
    async with sessionmaker() as session:
        experiment = await session.get(Experiment, experiment_id)
    if experiment is None:
        raise NotFound("Experiment not found")
    until = experiment.lease_expires_at
    raise Conflict(
        f"The experiment is running in another process ({experiment.lease_owner}); if that "
        f"process is gone, it can be resumed once its lease lapses"
        + (f", at {until:%H:%M:%S} UTC" if until else "")
    )


async def run_experiment(
    engine: AsyncEngine,
    experiment_id: uuid.UUID,
    *,
    options: ExecutionOptions,
    bus: EventBus | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[int, int], None] | None = None,
    lease: Lease | None = None,
) -> ExecutionResult:
    """Execute whatever is not completed yet; returns the totals of this execution.

    The experiment runs under ``lease`` (taken here when the caller has none: ``Conflict``
    while another process holds a live one), renewed as long as this runs. Whatever happens
    once it is taken, the experiment ends ``completed``, ``failed`` with the error, or
    ``cancelled``; a process that dies leaves a lease that lapses. ``LeaseLost`` means
    another process cancelled or took over the experiment. ``on_start(pending, total)`` is
    called once the work is known, before the first call.
    """
    sessionmaker = create_sessionmaker(engine)
    if lease is None:
        lease = await _take_lease(sessionmaker, experiment_id, options)
    ids = {"experiment_id": str(experiment_id)}
    status, error = "failed", None
    try:
        async with lease.kept():
            result = await _execute(engine, experiment_id, options, bus, on_progress, on_start)
        status = "completed"
        return result
    except asyncio.CancelledError:
        status, error = lease.stop_status, lease.stop_error
        task = asyncio.current_task()
        if lease.lost and task is not None and task.uncancel() == 0:
            raise LeaseLost(
                "The experiment was cancelled, or taken over, by another process"
            ) from None
        raise
    except BaseException as exc:
        error = describe(exc)
        logger.exception("experiment %s failed", experiment_id)
        raise
    finally:
        if not lease.lost:
            try:
                await asyncio.shield(lease.release(status, error))
            except Exception as exc:  # the lease lapses, and the experiment reads interrupted
                logger.warning("could not record how experiment %s ended: %s", experiment_id, exc)
            if bus is not None:
                await bus.publish({"type": f"experiment.{status}", **ids, "error": error})


async def _execute(
    engine: AsyncEngine,
    experiment_id: uuid.UUID,
    options: ExecutionOptions,
    bus: EventBus | None,
    on_progress: ProgressCallback | None,
    on_start: Callable[[int, int], None] | None,
) -> ExecutionResult:
    async with create_sessionmaker(engine)() as session:
        experiment = await session.get(Experiment, experiment_id)
        if experiment is None:
            raise NotFound("Experiment not found")
        spec = parse_spec(experiment.spec)
        access = await provider_access(session, options.policy, experiment.project_id, spec)
        plan = compile_plan(spec, allow_python=options.allow_python, access=access)
        use_cache = plan.spec.cache and experiment.use_cache
        await prepare_runs(session, experiment, plan)
        tasks = await pending_tasks(session, experiment, plan, use_cache=use_cache)
        await session.commit()
    providers = Providers(plan.providers)
    if on_start is not None:
        on_start(len(tasks), plan.total_runs)
    try:
        cache = (
            SqlResponseCache(engine, experiment.project_id, options.cache_bound)
            if use_cache
            else None
        )
        if cache is not None:
            await cache.preload([key for t in tasks if (key := first_stage_key(t, providers))])
        sink = SqlRunSink(engine, cache=cache)
        scorers = plan.build_scorers(
            ScorerContext(complete=providers.complete, allow_python=options.allow_python)
        )
        if bus is not None:
            await bus.publish(
                {
                    "type": "experiment.started",
                    "experiment_id": str(experiment_id),
                    "pending": len(tasks),
                }
            )
        progress = await execute(
            tasks,
            total=len(tasks),
            providers=providers,
            sink=sink,
            concurrency=options.concurrency or plan.spec.concurrency,
            cache=cache,
            scorers=scorers,
            weights=plan.weights,
            bus=bus,
            on_progress=on_progress,
        )
    finally:
        await providers.aclose()
    return ExecutionResult(
        experiment_id=experiment_id,
        status="completed",
        progress=progress,
        cache_hits=cache.stats.hits if cache else 0,
        cache_misses=cache.stats.misses if cache else 0,
        retries=providers.retries,
        skipped_completed=plan.total_runs - len(tasks),
    )


class SweepJobs:
    """Experiments executing in this server process, one task each. Whether an experiment
    runs anywhere is the database's to say (see ``lease``); this table knows only the tasks
    this process can cancel or wait for."""

    def __init__(self, engine: AsyncEngine, bus: EventBus, options: ExecutionOptions) -> None:
        self._engine = engine
        self._sessionmaker = create_sessionmaker(engine)
        self._bus = bus
        self._options = options
        self._tasks: dict[uuid.UUID, tuple[asyncio.Task[ExecutionResult], Lease]] = {}

    def _running(self, experiment_id: uuid.UUID) -> tuple[asyncio.Task[Any], Lease] | None:
        entry = self._tasks.get(experiment_id)
        return entry if entry is not None and not entry[0].done() else None

    async def start(
        self,
        experiment_id: uuid.UUID,
        *,
        concurrency: int | None = None,
        use_cache: bool | None = None,
    ) -> bool:
        """Start executing; False when it already runs, here or in another process (starting
        is idempotent). ``use_cache`` None keeps the experiment's last choice."""
        if self._running(experiment_id):
            return False
        lease = await Lease.acquire(
            self._sessionmaker, experiment_id, self._options.lease_seconds, use_cache=use_cache
        )
        if lease is None:
            return False
        options = replace(self._options, concurrency=concurrency, use_cache=None)
        task = asyncio.create_task(
            run_experiment(
                self._engine, experiment_id, options=options, bus=self._bus, lease=lease
            ),
            name=f"sweep-{experiment_id}",
        )
        task.add_done_callback(self._forget(experiment_id))
        self._tasks[experiment_id] = (task, lease)
        return True

    def _forget(self, experiment_id: uuid.UUID) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            entry = self._tasks.get(experiment_id)
            if entry is not None and entry[0] is task:
                del self._tasks[experiment_id]
            if not task.cancelled() and task.exception() is not None:
                logger.warning("sweep %s ended with %r", experiment_id, task.exception())

        return done

    async def cancel(self, experiment_id: uuid.UUID, *, shutting_down: bool = False) -> None:
        """Stop an experiment: this process's task if it runs here, else whichever process
        holds it (it notices at its next heartbeat), or one whose process died."""
        running = self._running(experiment_id)
        if running is not None:
            task, lease = running
            if shutting_down:
                lease.stop_status = "interrupted"
                lease.stop_error = "interrupted: the server running it stopped; start resumes it"
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            return
        async with self._sessionmaker() as session:
            cancelled = await cancel_unowned(session, experiment_id)
            await session.commit()
        if not cancelled:
            raise Conflict("The experiment is not running")
        event = {"type": "experiment.cancelled", "experiment_id": str(experiment_id)}
        await self._bus.publish({**event, "error": None})

    async def wait(self, experiment_id: uuid.UUID) -> None:
        running = self._running(experiment_id)
        if running is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await running[0]

    async def shutdown(self) -> None:
        """Stop every local execution as ``interrupted``: resumable, and not what a user
        asked for."""
        for experiment_id in list(self._tasks):
            with contextlib.suppress(Conflict):
                await self.cancel(experiment_id, shutting_down=True)
