"""Running an experiment durably: the same path for ``promptlooper sweep run`` and the API.

Every run is a row created once (a second start inserts nothing), and only runs that are not
completed are executed. A crash or Ctrl-C loses at most the runs in flight; partial results of
failed or abandoned runs are cleared before they run again, so nothing is ever duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from uuid6 import uuid7

from promptlooper.db.base import utcnow
from promptlooper.db.engine import create_sessionmaker, read_only
from promptlooper.db.upsert import insert_ignore, insert_new
from promptlooper.errors import Conflict, NotFound
from promptlooper.events import EventBus
from promptlooper.sweeps.credentials.service import provider_access
from promptlooper.sweeps.engine.executor import Progress, Providers, execute
from promptlooper.sweeps.engine.persistence import RunOutcome
from promptlooper.sweeps.engine.runner import RunTask, StageDef, first_stage_key
from promptlooper.sweeps.engine.space import config_hash
from promptlooper.sweeps.engine.spending import SpendingLimit
from promptlooper.sweeps.lease import Lease, LeaseLost, cancel_unowned
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.plan import SweepPlan, compile_plan
from promptlooper.sweeps.providers import ProviderPolicy
from promptlooper.sweeps.scorers.base import ScorerContext
from promptlooper.sweeps.spec import parse_stored_spec
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
    max_runs: int | None = None
    """The ``SWEEP_MAX_RUNS`` setting, judged again at every start like the policy."""
    ray_address: str | None = None
    """The Ray cluster that makes the calls (``RAY_ADDRESS``); None: this process makes them."""


@dataclass
class ExecutionResult:
    experiment_id: uuid.UUID
    status: str
    progress: Progress
    cache_hits: int = 0
    cache_misses: int = 0
    retries: int = 0
    skipped_completed: int = 0


FINAL_STATUSES = ("completed", "skipped")
"""Runs a start leaves as they are: done, or left out by an adaptive search's decision."""

RUN_BATCH = 2_000
"""Runs are read back to execute this many at a time: the largest sweep never holds all its
runs in memory."""
CREATE_BATCH = 1_000
"""Runs are created this many per transaction: preparing the rows of one holds the event
loop, and on SQLite the write lock, for a few milliseconds only."""


async def prepare_runs(
    sessionmaker: async_sessionmaker[AsyncSession], experiment: Experiment, plan: SweepPlan
) -> int:
    """Reset unfinished runs for a clean re-run and create every missing run row; returns how
    many runs are pending. Rows are created idempotently, a batch per transaction: a start
    that stops midway leaves runs the next start keeps and completes (skipping those there),
    and one that finds them all (a resume) creates none. A first start has nothing to skip,
    and copies its rows in (``insert_new``)."""
    unfinished = select(Run.id).where(
        Run.experiment_id == experiment.id, Run.status.not_in(FINAL_STATUSES)
    )
    async with sessionmaker() as session:
        await session.execute(delete(StageResult).where(StageResult.run_id.in_(unfinished)))
        await session.execute(delete(Score).where(Score.run_id.in_(unfinished)))
        await session.execute(
            update(Run)
            .where(Run.experiment_id == experiment.id, Run.status.not_in(FINAL_STATUSES))
            .values(
                status="pending", error=None, started_at=None, completed_at=None, sanitized=False
            )
        )
        await session.commit()
    mine = Run.experiment_id == experiment.id
    async with sessionmaker() as session:
        created = await session.scalar(select(func.count()).where(mine))
    rows = _run_rows(experiment, plan) if created != plan.total_runs else iter(())
    fresh = not created  # nothing to clash with: the rows go in as new (COPY on PostgreSQL)
    while batch := list(itertools.islice(rows, CREATE_BATCH)):
        async with sessionmaker() as session:
            if fresh:
                try:
                    await insert_new(session, Run.__table__, batch)  # type: ignore[arg-type]
                    await session.commit()
                    continue
                except IntegrityError:  # another start is creating them too
                    await session.rollback()
                    fresh = False
            await insert_ignore(session, Run.__table__, batch)  # type: ignore[arg-type]
            await session.commit()
    async with sessionmaker() as session:
        pending = await session.scalar(select(func.count()).where(mine, Run.status == "pending"))
    return pending or 0


def _run_rows(experiment: Experiment, plan: SweepPlan) -> Iterator[dict[str, Any]]:
    """Every run's row. Their ids are time-ordered (UUIDv7): a million inserts append to the
    primary key's index instead of writing all over it, as random ids would."""
    now = utcnow()
    for config in plan.configs:
        digest = config_hash(config)
        stages = plan.stages_for(config)
        for row_index, row in enumerate(plan.rows):
            executable = plan.run_config(config, row, stages)
            for repeat in range(plan.spec.repeats):
                yield {
                    "id": uuid7(),
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


async def pending_tasks(
    engine: AsyncEngine,
    experiment: Experiment,
    plan: SweepPlan,
    *,
    use_cache: bool,
    on_page: Callable[[list[RunTask]], Awaitable[None]] | None = None,
) -> AsyncIterator[RunTask]:
    """The pending runs as tasks, read a page at a time in a fixed order (each page after the
    last run of the one before, so runs finishing meanwhile change nothing); ``on_page`` sees
    each page before its tasks are handed out."""
    key = (Run.config_hash, Run.row_index, Run.repeat)
    query = (
        select(Run.id, *key, Run.parameters)
        .where(Run.experiment_id == experiment.id, Run.status == "pending")
        .order_by(*key)
        .limit(RUN_BATCH)
    )
    stages: dict[str, list[StageDef]] = {}
    after: tuple[str, int, int] | None = None
    reader = read_only(engine)
    while True:
        page = query if after is None else query.where(tuple_(*key) > after)
        async with reader.connect() as conn:
            rows = (await conn.execute(page)).all()
        if not rows:
            return
        tasks = []
        for run_id, digest, row_index, repeat, parameters in rows:
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
        if on_page is not None:
            await on_page(tasks)
        for task in tasks:
            yield task
        _, digest, row_index, repeat, _ = rows[-1]
        after = (digest, row_index, repeat)


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
    async with create_sessionmaker(read_only(engine))() as session:
        experiment = await session.get(Experiment, experiment_id)
        if experiment is None:
            raise NotFound("Experiment not found")
        spec = parse_stored_spec(experiment.spec)
        session.expire(experiment, ["spec"])  # the plan holds the dataset, packed; once is enough
        access = await provider_access(session, options.policy, experiment.project_id, spec)
        plan = compile_plan(
            spec, allow_python=options.allow_python, access=access, max_runs=options.max_runs
        )
        use_cache = plan.spec.cache and experiment.use_cache
    _place_local_models(plan, options.ray_address)
    if plan.spec.search.adaptive:
        from promptlooper.sweeps.search.runner import SearchRun, run_search

        search = SearchRun(engine, experiment, plan, options, use_cache, bus, on_progress)
        return await run_search(search, on_start)
    pending = await prepare_runs(create_sessionmaker(engine), experiment, plan)
    providers = Providers(plan.providers)
    if on_start is not None:
        on_start(pending, plan.total_runs)
    try:
        cache = (
            SqlResponseCache(engine, experiment.project_id, options.cache_bound)
            if use_cache
            else None
        )

        async def preload(page: list[RunTask]) -> None:
            if cache is not None:
                await cache.preload([key for t in page if (key := first_stage_key(t, providers))])

        tasks = pending_tasks(engine, experiment, plan, use_cache=use_cache, on_page=preload)
        sink = SqlRunSink(engine, cache=cache)
        scorers = plan.build_scorers(
            ScorerContext(complete=providers.complete, allow_python=options.allow_python)
        )
        if bus is not None:
            await bus.publish(
                {
                    "type": "experiment.started",
                    "experiment_id": str(experiment_id),
                    "pending": pending,
                }
            )
        concurrency = options.concurrency or plan.spec.concurrency
        if on_cluster(options, plan):
            progress = await execute_plan_on_cluster(
                experiment_id,
                options,
                plan,
                tasks,
                pending,
                sink,
                concurrency,
                cache,
                bus,
                on_progress,
            )
        else:
            progress = await execute(
                tasks,
                total=pending,
                providers=providers,
                sink=sink,
                concurrency=concurrency,
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
        skipped_completed=plan.total_runs - pending,
    )


def on_cluster(options: ExecutionOptions, plan: SweepPlan) -> bool:
    """Whether the calls go to the Ray cluster: when one is configured, unless a provider is
    a ``local`` model. Such a sweep runs in this process, and its local models generate in
    their host actors on the cluster (``_place_local_models``)."""
    if not options.ray_address:
        return False
    used = {ref.partition(":")[0] for ref in plan.model_refs()}
    local = sorted(name for name in used if plan.providers[name].type == "local")
    if local:
        logger.warning(
            "provider(s) %s run local models: this sweep runs in this process, the models"
            " in their host actors on the Ray cluster",
            local,
        )
    return not local


def _place_local_models(plan: SweepPlan, ray_address: str | None) -> None:
    """Tell ``local`` providers where their models run: in actors on this process's Ray
    cluster, or (None) in worker processes here. The process decides, never the sweep: an
    address a sweep set is replaced."""
    for name, config in plan.providers.items():
        if config.type == "local":
            options = {**config.options, "ray_address": ray_address}
            plan.providers[name] = replace(config, options=options)


async def execute_plan_on_cluster(
    experiment_id: uuid.UUID,
    options: ExecutionOptions,
    plan: SweepPlan,
    tasks: AsyncIterable[RunTask] | Iterable[RunTask],
    pending: int,
    sink: SqlRunSink,
    concurrency: int,
    cache: SqlResponseCache | None,
    bus: EventBus | None,
    on_progress: ProgressCallback | None = None,
    *,
    progress: Progress | None = None,
    limit: SpendingLimit | None = None,
) -> Progress:
    """The runs executed on the Ray cluster, a grid's all at once or a search's step by step
    (``progress`` and ``limit`` as ``execute_on_cluster`` takes them); Ray is imported only
    here."""
    from promptlooper.sweeps.engine.distributed import WorkerSetup, execute_on_cluster

    assert options.ray_address
    setup = WorkerSetup(
        providers=plan.providers,
        scorers=[(s.type, s.name, s.all_options) for s in plan.spec.scorers],
        weights=plan.weights,
        allow_python=options.allow_python,
    )
    return await execute_on_cluster(
        tasks,
        address=options.ray_address,
        total=pending,
        setup=setup,
        sink=sink,
        concurrency=concurrency,
        cache=cache,
        bus=bus,
        on_progress=on_progress,
        experiment_id=experiment_id,
        progress=progress,
        limit=limit,
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
