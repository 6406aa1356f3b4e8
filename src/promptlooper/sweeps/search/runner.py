"""Running an adaptive search: what racing and Optuna share.

A search executes in steps (a slice of rows for every surviving config, or a row prefix of one
trial), each through the same executor, cache and run sink as a grid, behind a
``BudgetedCaller`` that refuses a call the budget cannot pay for. Between steps the search
reads the scores back from the database, which stays the ledger: a resumed search finds its
runs, its spending and its decisions there. Runs the search decides not to make end
``skipped``, so the experiment finishes with nothing pending.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from promptlooper.db.engine import create_sessionmaker, read_only
from promptlooper.events import EventBus
from promptlooper.sweeps.engine.executor import Progress, Providers, execute
from promptlooper.sweeps.engine.runner import RunTask, StageDef, first_stage_key, weighted_score
from promptlooper.sweeps.engine.spending import BudgetedCaller, Limits, Spend, SpendingLimit
from promptlooper.sweeps.execution import (
    ExecutionOptions,
    ExecutionResult,
    ProgressCallback,
    execute_plan_on_cluster,
    on_cluster,
)
from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.plan import SweepPlan
from promptlooper.sweeps.scorers.base import ScorerContext
from promptlooper.sweeps.store import SqlResponseCache, SqlRunSink

OnStart = Callable[[int, int], None]


@dataclass
class SearchRun:
    """What an adaptive search executes with, as ``execution`` hands it over."""

    engine: AsyncEngine
    experiment: Experiment
    plan: SweepPlan
    options: ExecutionOptions
    use_cache: bool
    bus: EventBus | None
    on_progress: ProgressCallback | None
    sessionmaker: async_sessionmaker[AsyncSession] = field(init=False)

    def __post_init__(self) -> None:
        self.sessionmaker = create_sessionmaker(self.engine)


@dataclass
class Step:
    """The executor's side of a search: the calls it may make and the totals so far."""

    search: SearchRun
    providers: Providers
    limit: SpendingLimit
    cache: SqlResponseCache | None
    progress: Progress
    caller: BudgetedCaller = field(init=False)
    _stages: dict[str, list[StageDef]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.caller = BudgetedCaller(self.providers, self.limit)

    def tasks(self, runs: list[tuple[uuid.UUID, str, int, int, dict[str, Any]]]) -> list[RunTask]:
        """Run rows (id, config hash, row index, repeat, parameters) as the executor's tasks."""
        plan, use_cache = self.search.plan, self.search.use_cache
        tasks = []
        for run_id, digest, row_index, repeat, parameters in runs:
            if digest not in self._stages:
                self._stages[digest] = plan.stages_for(parameters)
            tasks.append(
                RunTask(
                    run_id=run_id,
                    experiment_id=self.search.experiment.id,
                    stages=self._stages[digest],
                    config=parameters,
                    row=plan.rows[row_index],
                    use_cache=use_cache and repeat == 0,
                )
            )
        return tasks

    async def run(self, tasks: list[RunTask]) -> None:
        """Execute ``tasks``, on the Ray cluster when one is configured (as a grid's runs
        are); stops early (``progress.spent_out``) when the budget is spent."""
        if not tasks or self.progress.spent_out:
            return
        if self.cache is not None:
            await self.cache.preload(
                [key for t in tasks if (key := first_stage_key(t, self.providers))]
            )
        search = self.search
        sink = SqlRunSink(search.engine, cache=self.cache)
        concurrency = search.options.concurrency or search.plan.spec.concurrency
        if on_cluster(search.options, search.plan):
            await execute_plan_on_cluster(
                search.experiment.id,
                search.options,
                search.plan,
                tasks,
                len(tasks),
                sink,
                concurrency,
                self.cache,
                search.bus,
                search.on_progress,
                progress=self.progress,
                limit=self.limit,
            )
            return
        await execute(
            tasks,
            total=len(tasks),
            providers=self.providers,
            caller=self.caller,
            sink=sink,
            concurrency=concurrency,
            cache=self.cache,
            scorers=search.plan.build_scorers(
                ScorerContext(
                    complete=self.caller.complete, allow_python=search.options.allow_python
                )
            ),
            weights=search.plan.weights,
            bus=search.bus,
            on_progress=search.on_progress,
            progress=self.progress,
        )


class SqlSpendLedger:
    """The experiment row's spending ledger (``search_calls``, ``search_usd``,
    ``search_tokens``), each write its own transaction so it is durable before the call."""

    def __init__(self, engine: AsyncEngine, experiment_id: uuid.UUID) -> None:
        self._engine = engine
        self._experiment_id = experiment_id

    async def write(self, spend: Spend) -> None:
        statement = (
            update(Experiment)
            .where(Experiment.id == self._experiment_id)
            .values(search_calls=spend.calls, search_usd=spend.usd, search_tokens=spend.tokens)
        )
        async with self._engine.begin() as conn:
            await conn.execute(statement)


async def spent(search: SearchRun) -> Spend:
    """What the search has spent so far: its ledger, which covers calls in flight and runs
    not yet written when a process died, and LLM-judge calls; at least what its recorded runs
    cost (calls actually made, not cache hits), which is all an experiment from before the
    ledger has."""
    recorded = (
        select(
            func.count(StageResult.id),
            func.coalesce(func.sum(StageResult.cost), 0.0),
            func.coalesce(func.sum(StageResult.tokens_in + StageResult.tokens_out), 0),
        )
        .join(Run, Run.id == StageResult.run_id)
        .where(Run.experiment_id == search.experiment.id, StageResult.cached.is_(False))
    )
    ledger = select(Experiment.search_calls, Experiment.search_usd, Experiment.search_tokens).where(
        Experiment.id == search.experiment.id
    )
    async with read_only(search.engine).connect() as conn:
        calls, usd, tokens = (await conn.execute(recorded)).one()
        held = (await conn.execute(ledger)).one()
    return Spend(
        max(int(calls), held.search_calls or 0),
        max(float(usd), held.search_usd or 0.0),
        max(int(tokens), held.search_tokens or 0),
    )


async def pending_runs(
    search: SearchRun, config_hashes: Collection[str]
) -> list[tuple[uuid.UUID, str, int, int, dict[str, Any]]]:
    """The pending runs of some configs: id, config hash, row index, repeat, parameters."""
    if not config_hashes:
        return []
    query = select(Run.id, Run.config_hash, Run.row_index, Run.repeat, Run.parameters).where(
        Run.experiment_id == search.experiment.id,
        Run.status == "pending",
        Run.config_hash.in_(list(config_hashes)),
    )
    async with read_only(search.engine).connect() as conn:
        return [tuple(row) for row in await conn.execute(query)]  # type: ignore[misc]


async def row_scores(
    search: SearchRun, config_hashes: Collection[str]
) -> dict[str, dict[int, float]]:
    """Each config's weighted score per dataset row (the mean over repeats), from its
    completed, scored runs."""
    runs = (
        select(Run.id, Run.config_hash, Run.row_index)
        .where(
            Run.experiment_id == search.experiment.id,
            Run.status == "completed",
            Run.config_hash.in_(list(config_hashes)),
        )
        .subquery()
    )
    query = select(
        runs.c.config_hash, runs.c.row_index, Score.run_id, Score.scorer_name, Score.value
    ).join(Score, Score.run_id == runs.c.id)
    per_run: dict[uuid.UUID, dict[str, float]] = defaultdict(dict)
    where: dict[uuid.UUID, tuple[str, int]] = {}
    async with read_only(search.engine).connect() as conn:
        for digest, row_index, run_id, name, value in await conn.execute(query):
            per_run[run_id][name] = value
            where[run_id] = (digest, row_index)
    per_row: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run_id, values in per_run.items():
        score = weighted_score(values, search.plan.weights)
        if score is not None:
            digest, row_index = where[run_id]
            per_row[digest][row_index].append(score)
    return {
        digest: {row: sum(v) / len(v) for row, v in rows.items()}
        for digest, rows in per_row.items()
    }


async def failed_rows(search: SearchRun, config_hashes: Collection[str]) -> dict[str, int]:
    """How many dataset rows each config has a failed run on."""
    if not config_hashes:
        return {}
    query = (
        select(Run.config_hash, func.count(func.distinct(Run.row_index)))
        .where(
            Run.experiment_id == search.experiment.id,
            Run.status == "failed",
            Run.config_hash.in_(list(config_hashes)),
        )
        .group_by(Run.config_hash)
    )
    async with read_only(search.engine).connect() as conn:
        return {digest: int(count) for digest, count in await conn.execute(query)}


async def skip(search: SearchRun, config_hashes: Collection[str] | None = None) -> int:
    """Mark the pending runs of ``config_hashes`` (None: of every config) ``skipped``: the
    search decided not to make them. Returns how many."""
    statement = update(Run).where(
        Run.experiment_id == search.experiment.id, Run.status == "pending"
    )
    if config_hashes is not None:
        if not config_hashes:
            return 0
        statement = statement.where(Run.config_hash.in_(list(config_hashes)))
    async with search.sessionmaker() as session:
        result = await session.execute(statement.values(status="skipped"))
        await session.commit()
    return max(result.rowcount, 0)  # type: ignore[attr-defined]


def mean(rows: Mapping[int, float]) -> float | None:
    return sum(rows.values()) / len(rows) if rows else None


async def run_search(search: SearchRun, on_start: OnStart | None) -> ExecutionResult:
    """Run the experiment's racing or Optuna search to its end (or its budget's)."""
    from promptlooper.sweeps.search import optuna_search, race

    strategy = race.race if search.plan.spec.search.strategy == "racing" else optuna_search.tune
    providers = Providers(search.plan.providers)
    try:
        limit = SpendingLimit(
            Limits.of(search.plan.spec.search.budget),
            await spent(search),
            SqlSpendLedger(search.engine, search.experiment.id),
        )
        cache = (
            SqlResponseCache(
                search.engine, search.experiment.project_id, search.options.cache_bound
            )
            if search.use_cache
            else None
        )
        step = Step(search, providers, limit, cache, Progress(total=0))
        await strategy(step, on_start)
        await limit.close()
    finally:
        await providers.aclose()
    return ExecutionResult(
        experiment_id=search.experiment.id,
        status="completed",
        progress=step.progress,
        cache_hits=cache.stats.hits if cache else 0,
        cache_misses=cache.stats.misses if cache else 0,
        retries=providers.retries,
    )
