"""``/api/projects/{id}/experiments``, ``/api/experiments/...``, ``/api/export/...`` and
``/api/cache``."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import uuid
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, status
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import AfterValidator

from promptlooper.auth.deps import PrincipalDep
from promptlooper.db.deps import Offset, ReadSessionDep, SessionDep
from promptlooper.sweeps import comparison, export, service, verdict
from promptlooper.sweeps.engine.runner import weighted_score
from promptlooper.sweeps.execution import SweepJobs
from promptlooper.sweeps.models import Experiment
from promptlooper.sweeps.schemas import (
    CacheCleared,
    CacheStats,
    ComparisonPublic,
    EliminationPublic,
    ExperimentDetail,
    ExperimentList,
    ExperimentPublic,
    Leaderboard,
    LeaderboardEntry,
    RunDetail,
    RunList,
    RunPublic,
    StagePublic,
    StartRequest,
    StartResponse,
)
from promptlooper.sweeps.search import store as search_store
from promptlooper.sweeps.spec import SweepSpec, reject_file_references
from promptlooper.sweeps.store import CacheBound

router = APIRouter(tags=["experiments"])
export_router = APIRouter(prefix="/api/export/experiments", tags=["export"])

ENDED = frozenset({"completed", "cancelled", "failed", "interrupted"})
FINAL_EVENTS = frozenset(f"experiment.{status}" for status in ENDED)
KEEPALIVE_SECONDS = 15.0
CHECK_SECONDS = 2.0
"""How often a quiet event stream looks at the experiment in the database."""


def _jobs(request: Request) -> SweepJobs:
    return request.app.state.sweep_jobs


async def _detail(session: SessionDep, experiment: Experiment) -> ExperimentDetail:
    counts = (await service.progress(session, [experiment.id]))[experiment.id]
    return ExperimentDetail.with_progress(experiment, counts)


@router.post("/api/projects/{project_id}/experiments", status_code=status.HTTP_201_CREATED)
async def create_experiment(
    project_id: uuid.UUID,
    body: SweepSpec,
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
) -> ExperimentDetail:
    """Create an experiment from a sweep document (validated in depth; 422 names the field)."""
    reject_file_references(body.model_dump())
    experiment = await service.create_experiment(
        session,
        principal,
        project_id,
        body,
        policy=request.app.state.provider_policy,
        max_runs=request.app.state.settings.sweep_max_runs,
        allow_python=request.app.state.settings.allow_python_callables,
    )
    await session.commit()
    return await _detail(session, experiment)


@router.get("/api/projects/{project_id}/experiments")
async def list_experiments(
    project_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Offset = 0,
) -> ExperimentList:
    experiments, total = await service.list_experiments(
        session, principal, project_id, limit=limit, offset=offset
    )
    counts = await service.progress(session, [e.id for e in experiments])
    data = [ExperimentPublic.with_progress(e, counts[e.id]) for e in experiments]
    return ExperimentList(data=data, count=total)


CompareLimit = Annotated[int, Query(ge=0, le=10_000, description="Rows listed, worst first")]
Margin = Annotated[
    float | None,
    Query(description="Also decide the regression gate with this margin, from 0 to 1"),
    AfterValidator(lambda m: m if m is None else verdict.check_margin(m)),
]
ConfigRef = Annotated[str | None, Query(min_length=1, max_length=64)]


def _comparison(found: comparison.Comparison, margin: float | None, limit: int) -> dict:
    paired = found.paired
    sides = {
        name: {
            "experiment_id": side.experiment.id,
            "experiment_name": side.experiment.name,
            "config_hash": side.config.config_hash,
            "parameters": side.config.parameters,
            "score": side.config.score,
            "interval": side.config.interval,
        }
        for name, side in (("baseline", found.baseline), ("candidate", found.candidate))
    }
    decided = None
    if margin is not None:
        decided = verdict.gate(paired, found.rows_needed, margin)
    return {
        **sides,
        "paired": None
        if paired is None
        else {
            **dataclasses.asdict(paired),
            "rows": paired.n,
            "significant": not paired.contains_zero(),
            "rows_needed": found.rows_needed,
        },
        "gate": None
        if decided is None
        else {"margin": margin, "failed": decided.failed, "reason": decided.reason},
        "rows_total": len(found.rows),
        "rows": [{**dataclasses.asdict(row), "change": row.change} for row in found.rows[:limit]],
    }


@router.get("/api/experiments/compare")
async def compare_experiments(
    principal: PrincipalDep,
    session: ReadSessionDep,
    baseline: uuid.UUID,
    candidate: uuid.UUID,
    a: ConfigRef = None,
    b: ConfigRef = None,
    margin: Margin = None,
    limit: CompareLimit = 100,
) -> ComparisonPublic:
    """A candidate experiment's config (``b``, default its best) against a baseline
    experiment's (``a``, default its best) over the same dataset, paired row by row, with the
    rows the candidate lost most on first; with ``margin``, the regression gate's decision."""
    found = await comparison.compare(session, principal, baseline, candidate, a=a, b=b)
    return ComparisonPublic.model_validate(_comparison(found, margin, limit))


@router.get("/api/experiments/{experiment_id}/compare")
async def compare_configs(
    experiment_id: uuid.UUID,
    principal: PrincipalDep,
    session: ReadSessionDep,
    a: ConfigRef = None,
    b: ConfigRef = None,
    margin: Margin = None,
    limit: CompareLimit = 100,
) -> ComparisonPublic:
    """Config ``b`` (default the runner-up) against config ``a`` (default the leader) of one
    experiment, paired row by row, the rows ``b`` lost most on first."""
    found = await comparison.compare(session, principal, experiment_id, experiment_id, a=a, b=b)
    return ComparisonPublic.model_validate(_comparison(found, margin, limit))


@router.get("/api/experiments/{experiment_id}")
async def get_experiment(
    experiment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> ExperimentDetail:
    experiment = await service.get_experiment(session, principal, experiment_id)
    return await _detail(session, experiment)


@router.delete("/api/experiments/{experiment_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_experiment(
    experiment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> None:
    """Delete it and its runs; 409 while it runs in any server."""
    await service.delete_experiment(session, principal, experiment_id)
    await session.commit()


@router.post("/api/experiments/{experiment_id}/start", status_code=status.HTTP_202_ACCEPTED)
async def start_experiment(
    experiment_id: uuid.UUID,
    request: Request,
    principal: PrincipalDep,
    session: ReadSessionDep,
    body: StartRequest | None = None,
) -> StartResponse:
    """Run what is not completed yet, in the background. Starting twice is harmless: an
    experiment running in any server is left to it (``started`` false). What its providers
    may use is judged again (422 naming the field)."""
    experiment = await service.get_experiment(session, principal, experiment_id)
    await service.startable_providers(
        session,
        experiment,
        policy=request.app.state.provider_policy,
        allow_python=request.app.state.settings.allow_python_callables,
    )
    body = body or StartRequest()
    started = await _jobs(request).start(
        experiment_id, concurrency=body.concurrency, use_cache=body.cache
    )
    return StartResponse(id=experiment_id, status="running", started=started)


@router.post("/api/experiments/{experiment_id}/cancel", status_code=status.HTTP_202_ACCEPTED)
async def cancel_experiment(
    experiment_id: uuid.UUID, request: Request, principal: PrincipalDep, session: ReadSessionDep
) -> StartResponse:
    """Stop a running experiment, wherever it runs; finished runs are kept, and a later start
    resumes. 409 when it is not running."""
    await service.get_experiment(session, principal, experiment_id)
    await _jobs(request).cancel(experiment_id)
    return StartResponse(id=experiment_id, status="cancelled", started=False)


@router.get("/api/experiments/{experiment_id}/runs")
async def list_runs(
    experiment_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    run_status: Annotated[
        Literal["pending", "completed", "failed", "skipped"] | None, Query(alias="status")
    ] = None,
    config_hash: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    offset: Offset = 0,
) -> RunList:
    experiment = await service.get_experiment(session, principal, experiment_id)
    runs, total = await service.list_runs(
        session,
        principal,
        experiment_id,
        status=run_status,
        config_hash=config_hash,
        limit=limit,
        offset=offset,
    )
    scores = await service.run_scores(session, [r.id for r in runs])
    weights = experiment.scoring_config.get("weights", {})
    data = [
        RunPublic.model_validate(run).model_copy(
            update={
                "weighted_score": weighted_score(scores[run.id], weights)
                if scores.get(run.id)
                else None
            }
        )
        for run in runs
    ]
    return RunList(data=data, count=total)


@router.get("/api/experiments/{experiment_id}/runs/{run_id}")
async def get_run(
    experiment_id: uuid.UUID, run_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> RunDetail:
    experiment = await service.get_experiment(session, principal, experiment_id)
    run, stages, scores = await service.get_run(session, principal, experiment_id, run_id)
    weights = experiment.scoring_config.get("weights", {})
    return RunDetail.model_validate(
        {
            **RunPublic.model_validate(run).model_dump(),
            "weighted_score": weighted_score(scores, weights) if scores else None,
            "config": run.config,
            "stages": [StagePublic.model_validate(s) for s in stages],
            "scores": scores,
        }
    )


@router.get("/api/experiments/{experiment_id}/leaderboard")
async def leaderboard(
    experiment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> Leaderboard:
    """Configs ranked by mean weighted score with its interval, each compared with the leader
    (paired, Holm-adjusted), with per-scorer means, repeats' flakiness, tokens, cost,
    latency."""
    experiment = await service.get_experiment(session, principal, experiment_id)
    summary = await service.summary(session, experiment)
    entries = [
        LeaderboardEntry(
            rank=rank,
            config_hash=c.config_hash,
            parameters=c.parameters,
            score=c.score,
            interval=c.interval,
            tied_with_leader=c.versus_leader.tied if c.versus_leader else None,
            versus_leader=c.versus_leader.as_dict() if c.versus_leader else None,
            runs=c.completed,
            failed=c.failed,
            scores=c.scores,
            scorer_intervals=c.scorer_intervals,
            repeats=c.repeats,
            flaky_rows=c.flaky_rows,
            pass_k=c.pass_k,
            tokens_in=c.tokens_in,
            tokens_out=c.tokens_out,
            cost=c.cost,
            p50_latency_ms=c.p50_latency_ms,
            best_run_id=c.best_run_id,
        )
        for rank, c in enumerate(summary.configs, start=1)
    ]
    eliminated = await search_store.eliminated(session, experiment_id, summary)
    return Leaderboard(
        experiment_id=experiment_id,
        weights=summary.weights,
        data=entries,
        eliminated=[EliminationPublic.model_validate(e) for e in eliminated],
    )


def _sse(event: str, data: object) -> str:
    return f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"


async def _state(request: Request, experiment_id: uuid.UUID) -> dict[str, Any] | None:
    state = request.app.state
    async with state.sessionmaker(bind=state.reader) as session:
        return await service.snapshot(session, experiment_id)


@router.get(
    "/api/experiments/{experiment_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def experiment_events(
    experiment_id: uuid.UUID, request: Request, principal: PrincipalDep, session: SessionDep
) -> StreamingResponse:
    """Server-sent events: a ``progress`` snapshot, then every run and experiment event until
    the experiment ends. A draft's stream waits for it to start and finish; an experiment that
    has ended gets the snapshot alone. Comments keep an idle stream open."""
    await service.get_experiment(session, principal, experiment_id)
    # A stream may last as long as the sweep: it must not hold a read transaction (which
    # would keep SQLite from checkpointing its log) or a pooled connection meanwhile.
    await session.close()
    bus = request.app.state.event_bus

    async def stream() -> AsyncIterator[str]:
        queue: asyncio.Queue[dict] = asyncio.Queue()

        async def pump() -> None:
            async for event in bus.listen():
                if event.get("experiment_id") == str(experiment_id):
                    queue.put_nowait(event)

        # Listening starts before the snapshot is read, so no event falls between the two.
        pumping = asyncio.create_task(pump())
        await asyncio.sleep(0)
        try:
            state = await _state(request, experiment_id)
            if state is None:
                return
            yield _sse("progress", state)
            quiet = 0.0
            while state["status"] not in ENDED:
                try:
                    event = await asyncio.wait_for(queue.get(), CHECK_SECONDS)
                except TimeoutError:
                    # An ending whose event never reached this server (the process running
                    # it died, or Redis missed it) shows in the database.
                    state = await _state(request, experiment_id)
                    if state is None or state["status"] in ENDED:
                        ended = state or {"experiment_id": str(experiment_id), "status": "deleted"}
                        yield _sse(f"experiment.{ended['status']}", ended)
                        return
                    quiet += CHECK_SECONDS
                    if quiet >= KEEPALIVE_SECONDS:
                        yield ": keep-alive\n\n"
                        quiet = 0.0
                    continue
                quiet = 0.0
                yield _sse(event["type"], event)
                if event["type"] in FINAL_EVENTS:
                    return
        finally:
            pumping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pumping

    return StreamingResponse(stream(), media_type="text/event-stream")


def _bound(request: Request) -> CacheBound:
    return CacheBound.from_settings(request.app.state.settings)


ProjectQuery = Annotated[
    uuid.UUID | None, Query(description="One project's entries (yours; any, for an admin)")
]
AllQuery = Annotated[bool, Query(alias="all", description="Every project's entries (admins only)")]


@router.get("/api/cache", tags=["cache"])
async def cache_stats(
    request: Request,
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    everything: AllQuery = False,
) -> CacheStats:
    """Your projects' cached responses (or one project's, or everyone's), and the whole
    cache's size against its bound."""
    scope = await service.cache_scope(
        session, principal, project_id=project_id, everything=everything
    )
    return CacheStats(**await service.cache_stats(session, scope, _bound(request)))


@router.delete("/api/cache", tags=["cache"])
async def clear_cache(
    principal: PrincipalDep,
    session: SessionDep,
    project_id: ProjectQuery = None,
    everything: AllQuery = False,
) -> CacheCleared:
    """Delete your projects' cached responses (or one project's; ``all=true``, admins only:
    every project's)."""
    scope = await service.cache_scope(
        session, principal, project_id=project_id, everything=everything
    )
    removed = await service.clear_cache(session, scope)
    await session.commit()
    return CacheCleared(removed=removed)


async def _best(session: SessionDep, principal: PrincipalDep, experiment_id: uuid.UUID) -> dict:
    experiment = await service.get_experiment(session, principal, experiment_id)
    summary = await service.summary(session, experiment)
    return export.best_config(experiment.id, experiment.name, summary)


@export_router.get("/{experiment_id}/best")
async def export_best(
    experiment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> dict:
    """The best config as JSON, with its weighted score and provenance."""
    return await _best(session, principal, experiment_id)


@export_router.get("/{experiment_id}/env", response_class=PlainTextResponse)
async def export_env(
    experiment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> PlainTextResponse:
    """The best config as ``KEY=VALUE`` lines with comment headers."""
    best = await _best(session, principal, experiment_id)
    return PlainTextResponse(export.render_env(best))


class YamlResponse(PlainTextResponse):
    media_type = "text/yaml"


class MarkdownResponse(PlainTextResponse):
    media_type = "text/markdown"


@export_router.get("/{experiment_id}/yaml", response_class=YamlResponse)
async def export_yaml(
    experiment_id: uuid.UUID, principal: PrincipalDep, session: SessionDep
) -> YamlResponse:
    best = await _best(session, principal, experiment_id)
    return YamlResponse(export.render_yaml(best))


@export_router.get("/{experiment_id}/report", response_class=MarkdownResponse)
async def export_report(
    experiment_id: uuid.UUID,
    principal: PrincipalDep,
    session: SessionDep,
    top_n: Annotated[int, Query(ge=1, le=100)] = 5,
) -> MarkdownResponse:
    """A markdown report; works for experiments with no runs yet."""
    experiment = await service.get_experiment(session, principal, experiment_id)
    summary = await service.summary(session, experiment)
    eliminated = await search_store.eliminated(session, experiment.id, summary)
    return MarkdownResponse(export.render_report(experiment, summary, top_n, eliminated=eliminated))
