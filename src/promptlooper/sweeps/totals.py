"""The leaderboard as the database computes it: a few rows per config, whatever the runs.

``service.summary`` reads every run and score of an experiment to compute its statistics;
for a sweep of a million runs that is hundreds of megabytes in the process. The CLI's
leaderboard needs only per-config totals, means and a median, which SQL aggregates and
window functions compute where the rows are, so the process holds one row per config. The
figures are those ``summary.summarise`` gives (the same weighted score, means and median),
up to the rounding of summing in another order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Float, case, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from promptlooper.sweeps.models import Experiment, Run, Score, StageResult
from promptlooper.sweeps.summary import leaderboard_order


@dataclass
class ConfigTotals:
    config_hash: str
    parameters: dict[str, Any]
    completed: int = 0
    failed: int = 0
    score: float | None = None
    scores: dict[str, float] = field(default_factory=dict)
    p50_latency_ms: float | None = None


@dataclass
class Leaderboard:
    counts: dict[str, int]
    configs: list[ConfigTotals]
    """Ranked as ``summarise`` ranks them: by score, then completed runs, then hash."""
    scorers: list[str]
    """The scorers that scored at least one completed run, by name."""


def _weight(weights: dict[str, float]) -> ColumnElement[float]:
    """A score's weight, as ``weighted_score`` weighs it (a scorer without one weighs 1)."""
    if not weights:
        return cast(1.0, Float)
    return case(*((Score.scorer_name == name, float(w)) for name, w in weights.items()), else_=1.0)


async def leaderboard(session: AsyncSession, experiment: Experiment) -> Leaderboard:
    """Per-config run counts, scores and median call latency of ``experiment``."""
    mine = Run.experiment_id == experiment.id
    counts: dict[str, int] = defaultdict(int)
    configs: dict[str, ConfigTotals] = {}
    for digest, parameters in await session.execute(_first_parameters(experiment)):
        configs[digest] = ConfigTotals(digest, parameters)
    status_counts = select(Run.config_hash, Run.status, func.count()).where(mine)
    for digest, status, n in await session.execute(
        status_counts.group_by(Run.config_hash, Run.status)
    ):
        counts[status] += n
        if status in ("completed", "failed"):
            setattr(configs[digest], status, n)

    completed = (mine, Run.status == "completed")
    means = (
        select(Run.config_hash, Score.scorer_name, func.avg(Score.value))
        .join(Run, Run.id == Score.run_id)
        .where(*completed)
        .group_by(Run.config_hash, Score.scorer_name)
        .order_by(Score.scorer_name)
    )
    scorers: set[str] = set()
    for digest, name, mean in await session.execute(means):
        configs[digest].scores[name] = mean
        scorers.add(name)

    weights: dict[str, float] = (experiment.scoring_config or {}).get("weights", {})
    weight = _weight(weights)
    total = func.sum(weight)
    per_run = (
        select(
            Run.config_hash.label("digest"),
            case((total > 0, func.sum(weight * Score.value) / total)).label("score"),
        )
        .join(Run, Run.id == Score.run_id)
        .where(*completed)
        .group_by(Run.id, Run.config_hash)
        .subquery()
    )
    scored = select(per_run.c.digest, func.avg(per_run.c.score)).group_by(per_run.c.digest)
    for digest, score in await session.execute(scored):
        configs[digest].score = score

    for digest, median in await session.execute(_median_latency(experiment)):
        configs[digest].p50_latency_ms = median

    ranked = sorted(
        configs.values(), key=lambda c: leaderboard_order(c.score, c.completed, c.config_hash)
    )
    return Leaderboard(counts=dict(counts), configs=ranked, scorers=sorted(scorers))


def _first_parameters(experiment: Experiment) -> Any:
    """Each config's parameters, read from one of its runs (JSON cannot be grouped on)."""
    numbered = (
        select(
            Run.config_hash,
            Run.parameters,
            func.row_number()
            .over(partition_by=Run.config_hash, order_by=(Run.row_index, Run.repeat))
            .label("n"),
        )
        .where(Run.experiment_id == experiment.id)
        .subquery()
    )
    return select(numbered.c.config_hash, numbered.c.parameters).where(numbered.c.n == 1)


def _median_latency(experiment: Experiment) -> Any:
    """The median, per config, of its completed, uncached runs' call time (the sum of their
    stages' latencies): the mean of the one or two middle values in latency order."""
    per_run = (
        select(Run.config_hash.label("digest"), func.sum(StageResult.latency_ms).label("ms"))
        .join(Run, Run.id == StageResult.run_id)
        .where(Run.experiment_id == experiment.id, Run.status == "completed", ~Run.cached)
        .group_by(Run.id, Run.config_hash)
        .subquery()
    )
    ranked = select(
        per_run.c.digest,
        per_run.c.ms,
        func.row_number().over(partition_by=per_run.c.digest, order_by=per_run.c.ms).label("i"),
        func.count().over(partition_by=per_run.c.digest).label("n"),
    ).subquery()
    middle = ranked.c.i.in_(((ranked.c.n + 1) // 2, (ranked.c.n + 2) // 2))
    return select(ranked.c.digest, func.avg(ranked.c.ms)).where(middle).group_by(ranked.c.digest)
