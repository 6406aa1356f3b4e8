"""Digging into an experiment: one config's runs, one run's every stage, and configs side by
side over the same dataset rows with their differences highlighted."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from promptlooper.db.deps import SessionDep
from promptlooper.errors import NotFound
from promptlooper.projects import service as projects
from promptlooper.sweeps import comparison, service, verdict
from promptlooper.sweeps.engine.runner import weighted_score
from promptlooper.sweeps.summary import choose
from promptlooper.web.diff import word_diff
from promptlooper.web.errors import PageRoute, error_page
from promptlooper.web.leaderboard import ranked_rows
from promptlooper.web.render import page
from promptlooper.web.session import PREFIX, ViewerDep

router = APIRouter(route_class=PageRoute, include_in_schema=False)
RUNS_PAGE = 50
ROWS_PAGE = 20


@router.get(PREFIX + "/sweeps/{experiment_id}/configs/{config_hash}")
async def config_runs(
    request: Request,
    experiment_id: uuid.UUID,
    config_hash: str,
    viewer: ViewerDep,
    session: SessionDep,
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    """A config's runs in dataset order, each with its scores and a link to its page."""
    experiment = await service.get_experiment(session, viewer.principal, experiment_id)
    project = await projects.get_project(session, viewer.principal, experiment.project_id)
    summary = await service.summary(session, experiment)
    found = [(rank, c) for rank, c in ranked_rows(summary) if c.config_hash == config_hash]
    if not found:
        raise NotFound("Config not found")
    rank, config = found[0]
    runs, total = await service.list_runs(
        session,
        viewer.principal,
        experiment.id,
        config_hash=config_hash,
        limit=RUNS_PAGE,
        offset=(page_number - 1) * RUNS_PAGE,
    )
    scores = await service.run_scores(session, [r.id for r in runs])
    weights = experiment.scoring_config.get("weights", {})
    return page(
        request,
        "sweeps/config.html",
        viewer,
        project=project,
        area="sweeps",
        experiment=experiment,
        rank=rank,
        config=config,
        runs=[
            {
                "run": run,
                "scores": scores.get(run.id, {}),
                "weighted": weighted_score(scores[run.id], weights) if scores.get(run.id) else None,
            }
            for run in runs
        ],
        scorers=sorted(summary.scorers),
        total=total,
        page_number=page_number,
        page_size=RUNS_PAGE,
    )


@router.get(PREFIX + "/runs/{run_id}")
async def run_page(
    request: Request, run_id: uuid.UUID, viewer: ViewerDep, session: SessionDep
) -> Response:
    """Everything one run did: its input, each stage's prompt and response verbatim, tokens,
    latency and cost, and each scorer's value."""
    experiment, run, stages, scores = await service.get_run_by_id(session, viewer.principal, run_id)
    project = await projects.get_project(session, viewer.principal, experiment.project_id)
    weights = experiment.scoring_config.get("weights", {})
    return page(
        request,
        "sweeps/run.html",
        viewer,
        project=project,
        area="sweeps",
        experiment=experiment,
        run=run,
        inputs=dict(run.config.get("input_data") or {}),
        stages=stages,
        scores=scores,
        weights=weights,
        weighted=weighted_score(scores, weights) if scores else None,
    )


@router.get(PREFIX + "/sweeps/{experiment_id}/compare")
async def compare(
    request: Request,
    experiment_id: uuid.UUID,
    viewer: ViewerDep,
    session: SessionDep,
    config: Annotated[list[str], Query()] = [],  # noqa: B006 (FastAPI copies it)
    page_number: int = Query(1, alias="page", ge=1, le=1_000_000),
) -> Response:
    """2 to 4 configs over the same rows: rows where their outputs disagree first, each
    output beside the first config's with what differs marked."""
    experiment = await service.get_experiment(session, viewer.principal, experiment_id)
    if not 2 <= len(dict.fromkeys(config)) <= 4:
        return error_page(
            request,
            400,
            "Pick 2 to 4 configs",
            f"{len(set(config))} distinct config(s) were picked; tick 2 to 4 on the leaderboard.",
        )
    project = await projects.get_project(session, viewer.principal, experiment.project_id)
    summary = await service.summary(session, experiment)
    ranks = {c.config_hash: (rank, c) for rank, c in ranked_rows(summary)}
    configs = [c for _, c in ranks.values()]
    # The leaderboard shows hashes cut to 8 characters: a prefix that names one config is
    # enough here, as in the API and the CLI.
    hashes = list(dict.fromkeys(choose(configs, h, field="config").config_hash for h in config))
    if len(hashes) < 2:
        return error_page(
            request,
            400,
            "Pick 2 to 4 configs",
            "The configs picked are one config; tick 2 to 4 different ones on the leaderboard.",
        )
    aligned = await service.aligned_outputs(session, viewer.principal, experiment.id, hashes)
    row_indexes = sorted({i for outputs in aligned.values() for i in outputs})
    rows = []
    for index in row_indexes:
        cells = [aligned[h].get(index) for h in hashes]
        texts = [cell.output if cell else None for cell in cells]
        first = next((cell for cell in cells if cell), None)
        rows.append(
            {
                "index": index,
                "inputs": first.inputs if first else {},
                "disagree": len(set(texts)) > 1,
                "cells": cells,
                "texts": texts,
            }
        )
    rows.sort(key=lambda row: (not row["disagree"], row["index"]))
    first = ranks[hashes[0]][1]
    versus = []
    for digest in hashes[1:]:
        paired, rows_needed = comparison.analyse(first, ranks[digest][1])
        versus.append(
            {
                "rank": ranks[digest][0],
                "config": ranks[digest][1],
                "paired": paired,
                "direction": verdict.direction(paired) if paired else None,
                "p_text": verdict.p_text(paired.p_value) if paired else None,
                "hint": verdict.separation_text(rows_needed)
                if paired and paired.contains_zero()
                else None,
            }
        )
    start = (page_number - 1) * ROWS_PAGE
    shown = rows[start : start + ROWS_PAGE]
    for row in shown:  # only the rows on the page are diffed
        baseline = row["texts"][0] or ""
        row["pieces"] = [
            word_diff(baseline, text) if position and text is not None else None
            for position, text in enumerate(row["texts"])
        ]
    return page(
        request,
        "sweeps/compare.html",
        viewer,
        project=project,
        area="sweeps",
        experiment=experiment,
        configs=[ranks[h] for h in hashes],
        versus=versus,
        rows=shown,
        total=len(rows),
        disagreeing=sum(row["disagree"] for row in rows),
        page_number=page_number,
        page_size=ROWS_PAGE,
    )
