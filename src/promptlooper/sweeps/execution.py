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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper.db.base import utcnow
from promptlooper.db.engine import create_sessionmaker
from promptlooper.db.upsert import insert_ignore
from promptlooper.errors import Conflict, NotFound
from promptlooper.events import EventBus
from promptlooper.sweeps.engine.executor import Progress, Providers, execute
from promptlooper.sweeps.engine.persistence import RunOutcome
from promptlooper.sweeps.engine.runner import RunTask, StageDef, first_stage_key
from promptlooper.sweeps.engine.space import config_hash
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.plan import SweepPlan, compile_plan
from promptlooper.sweeps.scorers.base import ScorerContext
from promptlooper.sweeps.spec import parse_spec
from promptlooper.sweeps.store import SqlResponseCache, SqlRunSink

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[Progress, RunOutcome], None]


@dataclass
class ExecutionOptions:
    concurrency: int | None = None
    use_cache: bool = True
    allow_python: bool = False
    env: Mapping[str, str] | None = None


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
        .values(status="pending", error=None, started_at=None, completed_at=None)
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


async def _finish(
    sessionmaker: async_sessionmaker[AsyncSession],
    experiment_id: uuid.UUID,
    status: str,
    error: str | None,
) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id)
            .values(status=status, error=error, completed_at=utcnow(), updated_at=utcnow())
        )
        await session.commit()


async def run_experiment(
    engine: AsyncEngine,
    experiment_id: uuid.UUID,
    *,
    options: ExecutionOptions | None = None,
    bus: EventBus | None = None,
    on_progress: ProgressCallback | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ExecutionResult:
    """Execute whatever is not completed yet; returns the totals of this execution.

    ``on_start(pending, total)`` is called once the work is known, before the first call.
    """
    options = options or ExecutionOptions()
    sessionmaker = create_sessionmaker(engine)
    async with sessionmaker() as session:
        experiment = await session.get(Experiment, experiment_id)
        if experiment is None:
            raise NotFound("Experiment not found")
        plan = compile_plan(
            parse_spec(experiment.spec), allow_python=options.allow_python, env=options.env
        )
        use_cache = plan.spec.cache and options.use_cache
        await prepare_runs(session, experiment, plan)
        tasks = await pending_tasks(session, experiment, plan, use_cache=use_cache)
        experiment.status = "running"
        experiment.started_at = experiment.started_at or utcnow()
        experiment.completed_at = None
        experiment.error = None
        await session.commit()
    if on_start is not None:
        on_start(len(tasks), plan.total_runs)

    providers = Providers(plan.providers)
    cache = SqlResponseCache(engine) if use_cache else None
    if cache is not None:
        await cache.preload([key for task in tasks if (key := first_stage_key(task, providers))])
    sink = SqlRunSink(engine, cache=cache)
    scorers = plan.build_scorers(
        ScorerContext(complete=providers.complete, allow_python=options.allow_python)
    )
    ids = {"experiment_id": str(experiment_id)}
    if bus is not None:
        await bus.publish({"type": "experiment.started", **ids, "pending": len(tasks)})
    status, error = "failed", None
    progress = Progress(total=len(tasks))
    try:
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
        status = "completed"
    except asyncio.CancelledError:
        status = "cancelled"
        raise
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        logger.exception("experiment %s failed", experiment_id)
        raise
    finally:
        await providers.aclose()
        await _finish(sessionmaker, experiment_id, status, error)
        if bus is not None:
            await bus.publish({"type": f"experiment.{status}", **ids, "error": error})
    return ExecutionResult(
        experiment_id=experiment_id,
        status=status,
        progress=progress,
        cache_hits=cache.stats.hits if cache else 0,
        cache_misses=cache.stats.misses if cache else 0,
        retries=providers.retries,
        skipped_completed=plan.total_runs - len(tasks),
    )


class SweepJobs:
    """Experiments executing in this server process, one task each."""

    def __init__(self, engine: AsyncEngine, bus: EventBus, options: ExecutionOptions) -> None:
        self._engine = engine
        self._bus = bus
        self._options = options
        self._tasks: dict[uuid.UUID, asyncio.Task[ExecutionResult]] = {}

    def is_running(self, experiment_id: uuid.UUID) -> bool:
        task = self._tasks.get(experiment_id)
        return task is not None and not task.done()

    def start(
        self, experiment_id: uuid.UUID, *, concurrency: int | None = None, use_cache: bool = True
    ) -> bool:
        """Start executing; False when it is already executing here (starting is idempotent)."""
        if self.is_running(experiment_id):
            return False
        options = ExecutionOptions(
            concurrency=concurrency,
            use_cache=use_cache,
            allow_python=self._options.allow_python,
            env=self._options.env,
        )
        task = asyncio.create_task(
            run_experiment(self._engine, experiment_id, options=options, bus=self._bus),
            name=f"sweep-{experiment_id}",
        )
        task.add_done_callback(self._forget(experiment_id))
        self._tasks[experiment_id] = task
        return True

    def _forget(self, experiment_id: uuid.UUID) -> Callable[[asyncio.Task[Any]], None]:
        def done(task: asyncio.Task[Any]) -> None:
            if self._tasks.get(experiment_id) is task:
                del self._tasks[experiment_id]
            if not task.cancelled() and task.exception() is not None:
                logger.warning("sweep %s ended with %r", experiment_id, task.exception())

        return done

    async def cancel(self, experiment_id: uuid.UUID) -> None:
        task = self._tasks.get(experiment_id)
        if task is None or task.done():
            raise Conflict("The experiment is not running in this server")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task

    async def wait(self, experiment_id: uuid.UUID) -> None:
        task = self._tasks.get(experiment_id)
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def shutdown(self) -> None:
        for experiment_id in list(self._tasks):
            with contextlib.suppress(Conflict):
                await self.cancel(experiment_id)
