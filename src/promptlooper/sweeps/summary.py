"""Aggregates over an experiment's runs: the leaderboard, score distributions, tokens, timing.

Pure functions over plain rows, shared by the leaderboard endpoint, the exports and the CLI.
A run's weighted score is Σ wᵢ·vᵢ / Σ wᵢ over its scores with the experiment's weights; a
config's score is the mean of its runs' weighted scores.
"""

from __future__ import annotations

import math
import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from promptlooper.sweeps.engine.runner import weighted_score

Z95 = 1.959964
"""The normal quantile of a two-sided 95 % interval."""


@dataclass(frozen=True, slots=True)
class RunRow:
    id: uuid.UUID
    config_hash: str
    parameters: dict[str, Any]
    status: str
    duration_ms: float | None
    tokens_in: int
    tokens_out: int
    cost: float
    cached: bool
    latency_ms: float | None = None
    """The time its provider calls took: the sum of its stages' latencies, each measured
    around the call alone. ``duration_ms`` also counts the waits for a provider's concurrency
    slot or rate limit, retry back-offs and scoring, which say how busy the sweep was rather
    than how fast a config answers."""


@dataclass
class ConfigSummary:
    config_hash: str
    parameters: dict[str, Any]
    runs: int = 0
    completed: int = 0
    failed: int = 0
    score: float | None = None
    score_margin: float | None = None
    """Half-width of the score's 95 % interval (normal approximation; None under 2 runs)."""
    scores: dict[str, float] = field(default_factory=dict)
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    p50_latency_ms: float | None = None
    """The median of its completed runs' ``latency_ms`` (runs answered from the cache made no
    call and are left out)."""
    best_run_id: uuid.UUID | None = None
    best_run_score: float | None = None


@dataclass
class ScorerStats:
    n: int
    mean: float
    minimum: float
    maximum: float
    stdev: float


@dataclass
class ExperimentSummary:
    counts: dict[str, int]
    configs: list[ConfigSummary]
    scorers: dict[str, ScorerStats]
    weights: dict[str, float]
    tokens_in: int
    tokens_out: int
    cost: float
    cached_runs: int
    durations_ms: list[float]

    @property
    def total_runs(self) -> int:
        return sum(self.counts.values())

    @property
    def ranked(self) -> list[ConfigSummary]:
        """Configs that have a score, best first."""
        return [c for c in self.configs if c.score is not None]


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def leaderboard_order(score: float | None, completed: int, config_hash: str) -> tuple[Any, ...]:
    """How configs rank: scored ones first, best score first, then more completed runs; the
    hash only makes the order total."""
    return (score is None, -(score or 0.0), -completed, config_hash)


def summarise(
    runs: Iterable[RunRow],
    scores: Mapping[uuid.UUID, Mapping[str, float]],
    weights: Mapping[str, float],
) -> ExperimentSummary:
    counts: dict[str, int] = defaultdict(int)
    configs: dict[str, ConfigSummary] = {}
    run_scores: dict[str, list[float]] = defaultdict(list)
    latencies: dict[str, list[float]] = defaultdict(list)
    per_scorer: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    all_scores: dict[str, list[float]] = defaultdict(list)
    durations: list[float] = []
    totals = {"tokens_in": 0, "tokens_out": 0, "cost": 0.0, "cached": 0}

    for run in runs:
        counts[run.status] += 1
        summary = configs.setdefault(
            run.config_hash, ConfigSummary(run.config_hash, run.parameters)
        )
        summary.runs += 1
        summary.tokens_in += run.tokens_in
        summary.tokens_out += run.tokens_out
        summary.cost += run.cost
        totals["tokens_in"] += run.tokens_in
        totals["tokens_out"] += run.tokens_out
        totals["cost"] += run.cost
        if run.status == "failed":
            summary.failed += 1
        if run.status != "completed":
            continue
        summary.completed += 1
        totals["cached"] += run.cached
        if run.duration_ms is not None:
            durations.append(run.duration_ms)
        if run.latency_ms is not None and not run.cached:
            latencies[run.config_hash].append(run.latency_ms)
        values = scores.get(run.id, {})
        for name, value in values.items():
            per_scorer[run.config_hash][name].append(value)
            all_scores[name].append(value)
        score = weighted_score(values, weights) if values else None
        if score is not None:
            run_scores[run.config_hash].append(score)
            if summary.best_run_score is None or score > summary.best_run_score:
                summary.best_run_id, summary.best_run_score = run.id, score
        elif summary.best_run_id is None:
            summary.best_run_id = run.id

    for digest, summary in configs.items():
        if run_scores[digest]:
            summary.score = statistics.fmean(run_scores[digest])
        if len(run_scores[digest]) > 1:
            spread = statistics.stdev(run_scores[digest])
            summary.score_margin = Z95 * spread / math.sqrt(len(run_scores[digest]))
        summary.scores = {n: statistics.fmean(v) for n, v in sorted(per_scorer[digest].items())}
        summary.p50_latency_ms = _median(latencies[digest])

    ranked = sorted(
        configs.values(), key=lambda c: leaderboard_order(c.score, c.completed, c.config_hash)
    )
    return ExperimentSummary(
        counts=dict(counts),
        configs=ranked,
        scorers={
            name: ScorerStats(
                n=len(values),
                mean=statistics.fmean(values),
                minimum=min(values),
                maximum=max(values),
                stdev=statistics.pstdev(values),
            )
            for name, values in sorted(all_scores.items())
        },
        weights=dict(weights),
        tokens_in=int(totals["tokens_in"]),
        tokens_out=int(totals["tokens_out"]),
        cost=float(totals["cost"]),
        cached_runs=int(totals["cached"]),
        durations_ms=sorted(durations),
    )
