"""Experiments, runs, leaderboards and the response cache. Functions take a session; the caller
commits. Access to an experiment is access to its project."""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import defer

from promptlooper.auth.principal import Principal
from promptlooper.db.base import utcnow
from promptlooper.db.groups import first_per_group
from promptlooper.errors import Conflict, Invalid, NotFound
from promptlooper.projects import service as projects
from promptlooper.sweeps.adapters.base import ProviderConfig
from promptlooper.sweeps.credentials.service import provider_access
from promptlooper.sweeps.lease import live
from promptlooper.sweeps.models import CacheEntry, Experiment, Run, Score, StageResult
from promptlooper.sweeps.plan import SweepPlan, compile_plan
from promptlooper.sweeps.providers import ProviderPolicy, provider_configs
from promptlooper.sweeps.spec import SweepSpec, parse_spec, stored_document
from promptlooper.sweeps.store import CacheBound
from promptlooper.training.layout import parse_checkpoint_ref

if TYPE_CHECKING:
    # The summary brings NumPy and SciPy: a process that only runs sweeps loads them when it
    # first computes a leaderboard, not for the whole run.
    from promptlooper.sweeps.summary import ExperimentSummary

RUN_STATUSES = ("pending", "completed", "failed", "skipped")


async def create_experiment(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    spec: SweepSpec,
    *,
    policy: ProviderPolicy,
    max_runs: int,
    allow_python: bool = False,
) -> Experiment:
    """Validate the sweep in depth, with what ``policy`` lets a sweep of the project use and
    at most ``max_runs`` runs (the ``SWEEP_MAX_RUNS`` setting), and store it as a draft
    experiment."""
    await projects.get_project(session, principal, project_id)
    access = await provider_access(session, policy, project_id, spec)
    plan = compile_plan(spec, allow_python=allow_python, access=access, max_runs=max_runs)
    await _check_checkpoints(session, principal, plan)
    experiment = Experiment(
        project_id=project_id,
        name=spec.name,
        description=spec.description,
        spec=stored_document(spec),
        parameter_space=spec.parameter_space,
        scoring_config={"weights": plan.weights},
        status="draft",
        total_runs=plan.total_runs,
    )
    session.add(experiment)
    await session.flush()
    return experiment


async def _check_checkpoints(session: AsyncSession, principal: Principal, plan: SweepPlan) -> None:
    """A sweep may generate with a training run's checkpoint only if the run is the caller's
    and the checkpoint was saved: judged at creation, not at each run's first call. (The
    training service loads only for such sweeps: its schemas take ~0.1 s to import.)"""
    for ref, where in sorted(plan.model_refs().items()):
        provider, _, model = ref.partition(":")
        local = plan.providers[provider].type == "local"
        checkpoint = parse_checkpoint_ref(model) if local else None
        if checkpoint is None:
            continue
        from promptlooper.training import service as training

        run_id, name = checkpoint
        try:
            run = await training.get_run(session, principal, run_id)
            await training.find_checkpoint(session, run, name)
        except NotFound as exc:
            raise Invalid(f"{where}: {ref!r}: {exc.message}") from exc


async def startable_providers(
    session: AsyncSession,
    experiment: Experiment,
    *,
    policy: ProviderPolicy,
    allow_python: bool,
) -> dict[str, ProviderConfig]:
    """The experiment's providers as ``policy`` lets them be used now (settings, credentials
    and its owner's rights may have changed since it was created); ``Invalid`` otherwise."""
    spec = parse_spec(experiment.spec)
    access = await provider_access(session, policy, experiment.project_id, spec)
    return provider_configs(spec, access, allow_python=allow_python)


async def get_experiment(
    session: AsyncSession,
    principal: Principal,
    experiment_id: uuid.UUID,
    *,
    without_spec: bool = False,
) -> Experiment:
    """The experiment, if ``principal`` may read its project. ``without_spec`` leaves its sweep
    document (with the dataset, which may be millions of values) unread, for a caller that
    shows only the experiment's own fields and its runs; reading ``spec`` then raises."""
    options = [defer(Experiment.spec, raiseload=True)] if without_spec else []
    experiment = await session.get(Experiment, experiment_id, options=options)
    if experiment is None:
        raise NotFound("Experiment not found")
    await projects.get_project(session, principal, experiment.project_id)
    return experiment


NEWEST_FIRST = (Experiment.created_at.desc(), Experiment.id)


async def list_experiments(
    session: AsyncSession,
    principal: Principal,
    project_id: uuid.UUID,
    *,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Experiment], int]:
    await projects.get_project(session, principal, project_id)
    query = select(Experiment).where(Experiment.project_id == project_id)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(*NEWEST_FIRST).limit(limit).offset(offset)
    return list(await session.scalars(page)), total or 0


async def experiments_in(
    session: AsyncSession, project_ids: list[uuid.UUID], *, limit: int
) -> list[Experiment]:
    """The newest experiments of several projects together, for a caller that has already
    found the projects and the right to read them (the operator's CLI)."""
    query = select(Experiment).where(Experiment.project_id.in_(project_ids))
    return list(await session.scalars(query.order_by(*NEWEST_FIRST).limit(limit)))


async def latest_experiments(
    session: AsyncSession, project_ids: list[uuid.UUID], *, per_project: int
) -> tuple[dict[uuid.UUID, list[Experiment]], dict[uuid.UUID, int]]:
    """The newest ``per_project`` experiments of each project and each project's count, in one
    query, for a caller that has already found the projects and the right to read them."""
    return await first_per_group(
        session, Experiment, Experiment.project_id, project_ids, NEWEST_FIRST, per_project
    )


async def leader_scores(
    session: AsyncSession, experiments: list[Experiment]
) -> dict[uuid.UUID, float | None]:
    """The leading config's score of each experiment (None before any scored run), in one
    query: the leaderboard's first score, ranked as the leaderboard ranks, without the rest of
    its summary."""
    from promptlooper.sweeps.summary import RunRow, summarise

    runs: dict[uuid.UUID, dict[uuid.UUID, RunRow]] = {e.id: {} for e in experiments}
    scores: dict[uuid.UUID, dict[str, float]] = defaultdict(dict)
    if experiments:
        query = (
            select(Run.experiment_id, Run.config_hash, Score.run_id, Score.scorer_name, Score.value)
            .join(Run, Run.id == Score.run_id)
            .where(Run.experiment_id.in_(list(runs)), Run.status == "completed")
        )
        for experiment_id, digest, run_id, name, value in await session.execute(query):
            runs[experiment_id][run_id] = RunRow(
                run_id, digest, {}, "completed", None, 0, 0, 0.0, False
            )
            scores[run_id][name] = value
    leaders: dict[uuid.UUID, float | None] = {}
    for experiment in experiments:
        weights = (experiment.scoring_config or {}).get("weights", {})
        ranked = summarise(runs[experiment.id].values(), scores, weights).ranked
        leaders[experiment.id] = ranked[0].score if ranked else None
    return leaders


async def progress(
    session: AsyncSession, experiment_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, int]]:
    """Run counts per status (and served from cache) for each experiment."""
    counts: dict[uuid.UUID, dict[str, int]] = defaultdict(
        lambda: dict.fromkeys((*RUN_STATUSES, "cached"), 0)
    )
    if not experiment_ids:
        return counts
    query = (
        select(Run.experiment_id, Run.status, Run.cached, func.count())
        .where(Run.experiment_id.in_(experiment_ids))
        .group_by(Run.experiment_id, Run.status, Run.cached)
    )
    for experiment_id, status, cached, n in await session.execute(query):
        counts[experiment_id][status] = counts[experiment_id].get(status, 0) + n
        if cached:
            counts[experiment_id]["cached"] += n
    return counts


def finished(experiment: Experiment, counts: Mapping[str, int]) -> bool:
    """Whether a start would have nothing left to do: no run pending or failed, and the runs
    all made or the experiment ended on its own. An adaptive search ends with the runs it
    decided against ``skipped`` (and Optuna creates only its trials' runs), so "completed
    runs below the total" does not mean unfinished. One running is not finished yet: its
    start is refused for the lease, not for having nothing to do."""
    status = experiment.current_status
    if status in ("running", "draft") or counts.get("pending", 0) or counts.get("failed", 0):
        return False
    made = counts.get("completed", 0) + counts.get("skipped", 0)
    return status == "completed" or made >= experiment.total_runs


async def snapshot(session: AsyncSession, experiment_id: uuid.UUID) -> dict[str, Any] | None:
    """An experiment's status, error and run counts as of now (None once it is deleted): what
    its event stream starts with, and checks when it has been quiet."""
    experiment = await session.get(Experiment, experiment_id, populate_existing=True)
    if experiment is None:
        return None
    counts = (await progress(session, [experiment_id]))[experiment_id]
    return {
        "experiment_id": str(experiment_id),
        "status": experiment.current_status,
        "error": experiment.current_error,
        **counts,
    }


async def delete_experiment(
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID
) -> None:
    """Delete it with its runs, unless a live lease says it is running (in any process)."""
    await get_experiment(session, principal, experiment_id)
    result = await session.execute(
        delete(Experiment)
        .where(Experiment.id == experiment_id, ~live(utcnow()))
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise Conflict("The experiment is running; cancel it first")


async def refuse_running_experiments(session: AsyncSession, project_id: uuid.UUID) -> None:
    """A project guard: no deleting a project while one of its experiments runs. The rows
    stay locked (on PostgreSQL) until the deletion commits, so none can start meanwhile."""
    in_project = Experiment.project_id == project_id
    await session.execute(select(Experiment.id).where(in_project).with_for_update())
    running = await session.scalar(select(func.count()).where(in_project, live(utcnow())))
    if running:
        raise Conflict(f"{running} experiment(s) of the project are running; cancel them first")


async def list_runs(
    session: AsyncSession,
    principal: Principal,
    experiment_id: uuid.UUID,
    *,
    status: str | None = None,
    config_hash: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Run], int]:
    await get_experiment(session, principal, experiment_id)
    query = select(Run).where(Run.experiment_id == experiment_id)
    if status is not None:
        query = query.where(Run.status == status)
    if config_hash is not None:
        query = query.where(Run.config_hash == config_hash)
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    page = query.order_by(Run.config_hash, Run.row_index, Run.repeat).limit(limit).offset(offset)
    return list(await session.scalars(page)), total or 0


async def run_scores(
    session: AsyncSession, run_ids: list[uuid.UUID]
) -> dict[uuid.UUID, dict[str, float]]:
    scores: dict[uuid.UUID, dict[str, float]] = defaultdict(dict)
    if run_ids:
        query = select(Score.run_id, Score.scorer_name, Score.value).where(
            Score.run_id.in_(run_ids)
        )
        for run_id, name, value in await session.execute(query):
            scores[run_id][name] = value
    return scores


async def get_run(
    session: AsyncSession, principal: Principal, experiment_id: uuid.UUID, run_id: uuid.UUID
) -> tuple[Run, list[StageResult], dict[str, float]]:
    await get_experiment(session, principal, experiment_id)
    run = await session.get(Run, run_id)
    if run is None or run.experiment_id != experiment_id:
        raise NotFound("Run not found")
    stages = await session.scalars(
        select(StageResult).where(StageResult.run_id == run_id).order_by(StageResult.stage_index)
    )
    return run, list(stages), (await run_scores(session, [run_id])).get(run_id, {})


async def get_run_by_id(
    session: AsyncSession, principal: Principal, run_id: uuid.UUID
) -> tuple[Experiment, Run, list[StageResult], dict[str, float]]:
    """A run found by its id alone (a link to a run need not name its experiment), with its
    experiment, stages and scores; access is its experiment's project's."""
    run = await session.get(Run, run_id)
    if run is None:
        raise NotFound("Run not found")
    experiment = await get_experiment(session, principal, run.experiment_id)
    stages = await session.scalars(
        select(StageResult).where(StageResult.run_id == run_id).order_by(StageResult.stage_index)
    )
    return experiment, run, list(stages), (await run_scores(session, [run_id])).get(run_id, {})


@dataclass(frozen=True, slots=True)
class RowOutput:
    """One config's first repeat on one dataset row: what it answered (its last stage's
    response; None before it ran or when it failed before answering)."""

    run_id: uuid.UUID
    status: str
    error: str | None
    output: str | None
    inputs: dict[str, Any]


async def aligned_outputs(
    session: AsyncSession,
    principal: Principal,
    experiment_id: uuid.UUID,
    config_hashes: list[str],
) -> dict[str, dict[int, RowOutput]]:
    """Each config's output per dataset row, so several configs can be read side by side over
    the same rows: two statements however many rows or configs."""
    await get_experiment(session, principal, experiment_id)
    runs = list(
        await session.execute(
            select(Run.id, Run.config_hash, Run.row_index, Run.status, Run.error, Run.config).where(
                Run.experiment_id == experiment_id,
                Run.config_hash.in_(config_hashes),
                Run.repeat == 0,
            )
        )
    )
    last: dict[uuid.UUID, tuple[int, str]] = {}
    if runs:
        stages = (
            select(StageResult.run_id, StageResult.stage_index, StageResult.response_raw)
            .join(Run, Run.id == StageResult.run_id)
            .where(
                Run.experiment_id == experiment_id,
                Run.config_hash.in_(config_hashes),
                Run.repeat == 0,
            )
        )
        for run_id, index, response in await session.execute(stages):
            if run_id not in last or index > last[run_id][0]:
                last[run_id] = (index, response)
    aligned: dict[str, dict[int, RowOutput]] = {digest: {} for digest in config_hashes}
    for run_id, digest, row_index, status, error, config in runs:
        answer = last.get(run_id)
        aligned[digest][row_index] = RowOutput(
            run_id=run_id,
            status=status,
            error=error,
            output=answer[1] if answer else None,
            inputs=dict((config or {}).get("input_data") or {}),
        )
    return aligned


SUMMARY_PAGE = 1000
"""Runs read per query for a summary: a page's rows are what a summary holds beyond its
per-config statistics. A thousand cost no more CPU than five thousand and keep ~8 MB less at
the leaderboard's peak (the page's rows, run ids and scores)."""


async def summary(session: AsyncSession, experiment: Experiment) -> ExperimentSummary:
    """Everything the leaderboard, exports and report show, computed from the runs.

    The runs are read a page at a time in the order of their key (config, row, repeat), so the
    tally holds one config's per-run values at a time, whatever the number of runs."""
    from promptlooper.sweeps.summary import RunRow, Tally

    weights: dict[str, Any] = (experiment.scoring_config or {}).get("weights", {})
    tally = Tally(weights, ordered=True)
    key = (Run.config_hash, Run.row_index, Run.repeat)
    parameters = await _config_parameters(session, experiment.id)
    after: tuple[str, int, int] | None = None
    while True:
        query = select(
            Run.id,
            *key,
            Run.status,
            Run.duration_ms,
            Run.tokens_in,
            Run.tokens_out,
            Run.cost,
            Run.cached,
        ).where(Run.experiment_id == experiment.id)
        if after is not None:
            query = query.where(tuple_(*key) > after)
        page = (await session.execute(query.order_by(*key).limit(SUMMARY_PAGE))).all()
        if not page:
            break
        in_page = [Run.experiment_id == experiment.id, tuple_(*key) <= tuple(page[-1][1:4])]
        if after is not None:
            in_page.append(tuple_(*key) > after)
        scores: dict[uuid.UUID, dict[str, float]] = defaultdict(dict)
        for run_id, name, value in await session.execute(
            select(Score.run_id, Score.scorer_name, Score.value)
            .join(Run, Run.id == Score.run_id)
            .where(*in_page, Run.status == "completed")
        ):
            scores[run_id][name] = value
        latency_query = (
            select(StageResult.run_id, func.sum(StageResult.latency_ms))
            .join(Run, Run.id == StageResult.run_id)
            .where(*in_page)
            .group_by(StageResult.run_id)
        )
        latencies = dict((await session.execute(latency_query)).all())
        for run_id, digest, row_index, repeat, status, *usage in page:
            run = RunRow(
                run_id,
                digest,
                parameters[digest],
                status,
                *usage,
                latency_ms=latencies.get(run_id),
                row_index=row_index,
                repeat=repeat,
            )
            tally.add(run, scores.get(run_id, {}))
        if len(page) < SUMMARY_PAGE:
            break
        after = tuple(page[-1][1:4])
    return tally.result(await _median_duration(session, experiment.id, tally.durations.n))


async def _median_duration(
    session: AsyncSession, experiment_id: uuid.UUID, count: int
) -> float | None:
    """The median duration of the experiment's ``count`` completed runs that have one, read
    from the database (the middle one or two in order) rather than holding every duration."""
    if not count:
        return None
    query = (
        select(Run.duration_ms)
        .where(
            Run.experiment_id == experiment_id,
            Run.status == "completed",
            Run.duration_ms.is_not(None),
        )
        .order_by(Run.duration_ms)
        .offset((count - 1) // 2)
        .limit(2 - count % 2)
    )
    middle = list((await session.scalars(query)).all())
    return statistics.median(middle) if middle else None


async def _config_parameters(
    session: AsyncSession, experiment_id: uuid.UUID
) -> dict[str, dict[str, Any]]:
    """Each config's parameters, in one query however many configs there are: every run of a
    config holds the same, so those of its first row are read (not every run's)."""
    first = (
        select(Run.config_hash, func.min(Run.row_index))
        .where(Run.experiment_id == experiment_id)
        .group_by(Run.config_hash)
    )
    query = select(Run.config_hash, Run.parameters).where(
        Run.experiment_id == experiment_id, tuple_(Run.config_hash, Run.row_index).in_(first)
    )
    return dict((await session.execute(query)).all())


async def cache_scope(
    session: AsyncSession,
    principal: Principal,
    *,
    project_id: uuid.UUID | None = None,
    everything: bool = False,
) -> list[uuid.UUID] | None:
    """The projects whose cache entries a request is about: one project (the caller's, or
    any for an admin), every project (``everything``: admins only; None), or by default the
    caller's own projects."""
    if everything:
        if project_id is not None:
            raise Invalid("all: give a project or all, not both")
        principal.ensure_admin()
        return None
    if project_id is not None:
        await projects.get_project(session, principal, project_id)
        return [project_id]
    return await projects.owned_project_ids(session, principal)


async def _cache_summary(session: AsyncSession, scope: list[uuid.UUID] | None) -> dict[str, int]:
    query = select(
        func.count(),
        func.coalesce(func.sum(CacheEntry.size), 0),
        func.coalesce(func.sum(CacheEntry.hits), 0),
    )
    if scope is not None:
        query = query.where(CacheEntry.project_id.in_(scope))
    entries, size, hits = (await session.execute(query)).one()
    return {"entries": int(entries), "bytes": int(size), "hits": int(hits)}


async def cache_stats(
    session: AsyncSession, scope: list[uuid.UUID] | None, bound: CacheBound
) -> dict[str, int | None]:
    """The entries, bytes and hits of ``scope`` (None: every project), and the whole cache's
    size against its bound."""
    whole = await _cache_summary(session, None)
    return {
        **(whole if scope is None else await _cache_summary(session, scope)),
        "total_entries": whole["entries"],
        "total_bytes": whole["bytes"],
        "max_entries": bound.max_entries,
        "max_bytes": bound.max_bytes,
    }


async def clear_cache(session: AsyncSession, scope: list[uuid.UUID] | None) -> int:
    """Delete the entries of ``scope`` (None: every project's); returns how many."""
    statement = delete(CacheEntry)
    if scope is not None:
        statement = statement.where(CacheEntry.project_id.in_(scope))
    result = await session.execute(statement)
    return max(result.rowcount, 0)  # type: ignore[attr-defined]
