"""Optuna search: its TPE sampler proposes configs, its pruner stops poor ones early.

For spaces too large to enumerate (numeric ranges among them), each trial is one config run
on growing prefixes of the shuffled rows; after each prefix the trial reports its mean score
and the median pruner (against earlier trials at the same prefix) may stop it, its remaining
runs skipped. A trial's runs are ordinary run rows, so the leaderboard, exports and cache
treat them like any config's. The database is the study's storage: a resumed search re-feeds
every stored config to a fresh study (``add_trial``) and finishes the trial a crash cut short.

Optuna is imported here only, when a search uses it.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from promptlooper.db.engine import read_only
from promptlooper.db.upsert import insert_ignore
from promptlooper.sweeps.engine.space import Config, config_hash
from promptlooper.sweeps.execution import _run_rows, prepare_runs
from promptlooper.sweeps.models import Run
from promptlooper.sweeps.search.racing import row_order, slice_ends
from promptlooper.sweeps.search.runner import (
    OnStart,
    SearchRun,
    Step,
    mean,
    pending_runs,
    row_scores,
    skip,
)

if TYPE_CHECKING:
    import optuna

IDLE_TRIALS = 50
"""Trials in a row that proposed only configs already measured: the sampler has nothing new
to try in a space this small, and a search limited by its budget alone stops."""


class Space:
    """The parameter space as Optuna's distributions. Listed values are sampled by index, so
    any value (a prompt, a mapping of options) can be a choice."""

    def __init__(self, optuna_module: Any, space: dict[str, Any]) -> None:
        dist = optuna_module.distributions
        self.space = space
        self.distributions: dict[str, Any] = {}
        for key, values in space.items():
            if isinstance(values, dict):
                whole = all(isinstance(values[b], int) for b in ("low", "high"))
                kind = dist.IntDistribution if whole else dist.FloatDistribution
                self.distributions[key] = kind(values["low"], values["high"], log=values["log"])
            else:
                self.distributions[key] = dist.CategoricalDistribution(range(len(values)))

    def config(self, params: dict[str, Any]) -> Config:
        return {
            key: params[key] if isinstance(values, dict) else values[params[key]]
            for key, values in self.space.items()
        }

    def params(self, config: Config) -> dict[str, Any] | None:
        """The trial parameters that give ``config``; None when it is not in the space."""
        params: dict[str, Any] = {}
        for key, values in self.space.items():
            if isinstance(values, dict):
                params[key] = config[key]
            elif config.get(key) in values:
                params[key] = values.index(config[key])
            else:
                return None
        return params


async def _stored(search: SearchRun) -> list[tuple[str, Config, dict[str, int]]]:
    """Every config the search has created runs for, in the order it was tried, with its run
    counts by status."""
    query = (
        select(Run.config_hash, Run.status, func.count(), func.min(Run.created_at))
        .where(Run.experiment_id == search.experiment.id)
        .group_by(Run.config_hash, Run.status)
    )
    counts: dict[str, dict[str, int]] = defaultdict(dict)
    first: dict[str, Any] = {}
    async with read_only(search.engine).connect() as conn:
        for digest, status, count, created in await conn.execute(query):
            counts[digest][status] = count
            first[digest] = min(first.get(digest, created), created)
        parameters = dict(
            (
                await conn.execute(
                    select(Run.config_hash, Run.parameters)
                    .where(Run.experiment_id == search.experiment.id, Run.row_index == 0)
                    .where(Run.repeat == 0)
                )
            ).all()
        )
    order = sorted(counts, key=lambda digest: (first[digest], digest))
    return [(digest, parameters[digest], counts[digest]) for digest in order]


def _values(scores: dict[int, float], position: dict[int, int], ends: list[int]) -> list[float]:
    """The trial's mean score at each row prefix it has completed."""
    values = []
    for end in ends:
        prefix = {row: score for row, score in scores.items() if position[row] < end}
        if len(prefix) < min(end, len(position)) or not prefix:
            break
        values.append(sum(prefix.values()) / len(prefix))
    return values


async def _refeed(
    step: Step, study: Any, space: Space, position: dict[int, int], ends: list[int]
) -> None:
    """Give a fresh study the trials its stored runs show."""
    import optuna

    stored = await _stored(step.search)
    scores = await row_scores(step.search, [digest for digest, _, _ in stored])
    for digest, config, counts in stored:
        params = space.params(config)
        if params is None:
            continue
        if counts.get("pending"):
            study.enqueue_trial(params)  # cut short by a crash: it runs on
            continue
        values = _values(scores.get(digest, {}), position, ends)
        pruned = bool(counts.get("skipped"))
        study.add_trial(
            optuna.trial.create_trial(
                params=params,
                distributions=space.distributions,
                state=optuna.trial.TrialState.PRUNED
                if pruned
                else optuna.trial.TrialState.COMPLETE,
                value=None if pruned else mean(scores.get(digest, {})) or 0.0,
                intermediate_values=dict(enumerate(values)),
            )
        )


async def _create_runs(search: SearchRun, config: Config) -> None:
    """The trial's run rows (one per dataset row and repeat), created once."""
    rows = list(_run_rows(search.experiment, replace(search.plan, configs=[config])))
    async with search.sessionmaker() as session:
        for start in range(0, len(rows), 2_000):
            await insert_ignore(session, Run.__table__, rows[start : start + 2_000])  # type: ignore[arg-type]
        await session.commit()


async def tune(step: Step, on_start: OnStart | None) -> None:
    import optuna

    optuna.logging.set_verbosity(logging.WARNING)
    search, progress = step.search, step.progress
    settings = search.plan.spec.search
    await prepare_runs(search.sessionmaker, search.experiment, replace(search.plan, configs=[]))
    space = Space(optuna, search.plan.spec.parameter_space)
    order = row_order(len(search.plan.rows), settings.seed)
    position = {row: index for index, row in enumerate(order)}
    ends = slice_ends(len(order), settings.first_slice)
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=3),
    )
    await _refeed(step, study, space, position, ends)
    progress.total = search.plan.total_runs
    if on_start is not None:
        on_start(progress.total, progress.total)
    idle = 0
    while settings.n_trials is None or len(study.trials) < settings.n_trials:
        if progress.spent_out or idle >= IDLE_TRIALS:
            break
        trial = study.ask(space.distributions)
        config = space.config(trial.params)
        digest = config_hash(config)
        calls = step.limit.spent.calls
        await _create_runs(search, config)
        state = await _trial(step, trial, digest, position, ends)
        idle = idle + 1 if step.limit.spent.calls == calls else 0
        if state is None:  # the budget ran out mid-trial
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        if state == "pruned":
            await skip(search, [digest])
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        else:
            study.tell(trial, state)
        pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
        best = max((t.value for t in study.trials if t.value is not None), default=None)
        progress.note = (
            f"optuna: trial {len(study.trials)}"
            + (f"/{settings.n_trials}" if settings.n_trials else "")
            + f", {pruned} pruned"
            + (f", best {best:.3f}" if best is not None else "")
            + f", {step.limit.describe()}"
        )
    await skip(search)


async def _trial(
    step: Step, trial: optuna.trial.Trial, digest: str, position: dict[int, int], ends: list[int]
) -> float | str | None:
    """Run one trial prefix by prefix: its final mean score, ``"pruned"``, or None when the
    budget ran out."""
    scores: dict[int, float] = {}
    for index, end in enumerate(ends):
        runs = [r for r in await pending_runs(step.search, [digest]) if position[r[2]] < end]
        runs.sort(key=lambda r: (position[r[2]], r[3]))
        await step.run(step.tasks(runs))
        if step.progress.spent_out:
            return None
        scores = (await row_scores(step.search, [digest])).get(digest, {})
        value = mean({row: s for row, s in scores.items() if position[row] < end})
        if value is None:
            continue
        trial.report(value, index)
        if trial.should_prune():
            return "pruned"
    return mean(scores) or 0.0
