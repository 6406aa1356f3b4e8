"""Aggregates over an experiment's runs: the leaderboard, score distributions, tokens, timing.

Pure functions over plain rows, shared by the leaderboard endpoint, the exports and the CLI.
A run's weighted score is Σ wᵢ·vᵢ / Σ wᵢ over its scores with the experiment's weights; a
config's score is the mean of its runs' weighted scores.

Each score comes with how sure it is: an interval over the dataset rows (a row's repeats are
averaged first, since repeats of one row are not independent samples), and each config is
compared with the leader on the rows both answered, the p-values adjusted for making all those
comparisons at once (``significance``).
"""

from __future__ import annotations

import statistics
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from promptlooper.errors import Invalid, NotFound
from promptlooper.sweeps import significance
from promptlooper.sweeps.engine.runner import weighted_score
from promptlooper.sweeps.significance import Interval, Paired

ALPHA = 0.05
PASS = 0.5
"""A run passes (for flaky rows and pass^k) when its weighted score is at least this: for a
pass/fail scorer, when it passes."""


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
    row_index: int = 0
    repeat: int = 0


@dataclass
class ConfigSummary:
    config_hash: str
    parameters: dict[str, Any]
    runs: int = 0
    completed: int = 0
    failed: int = 0
    score: float | None = None
    interval: Interval | None = None
    """The 95 % interval of the score over the rows: Wilson for pass/fail, t otherwise."""
    scores: dict[str, float] = field(default_factory=dict)
    scorer_intervals: dict[str, Interval] = field(default_factory=dict)
    row_scores: dict[int, float] = field(default_factory=dict)
    """Each answered row's weighted score (the mean of its scored repeats), by row index (in
    no particular order)."""
    versus_leader: VersusLeader | None = None
    """This config against the leader (None for the leader, or under two common rows)."""
    repeats: int = 1
    """The most scored repeats of one row."""
    flaky_rows: list[int] = field(default_factory=list)
    """Rows whose repeats disagree: some pass, some do not."""
    pass_k: float | None = None
    """The share of rows whose every repeat passes (``repeats`` > 1 only)."""
    tokens_in: int = 0
    tokens_out: int = 0
    cost: float = 0.0
    p50_latency_ms: float | None = None
    """The median of its completed runs' ``latency_ms`` (runs answered from the cache made no
    call and are left out)."""
    best_run_id: uuid.UUID | None = None
    best_run_score: float | None = None


@dataclass(slots=True)
class VersusLeader:
    """A config against the leader over the rows both answered (``paired.diff`` is this
    config's score minus the leader's)."""

    leader: str
    paired: Paired
    p_adjusted: float
    """Holm-adjusted over the leaderboard's comparisons with the leader."""
    rows_needed: int | None = None
    """For a tie, the rows that would separate the two at the observed difference (power
    0.8); None when they are separated already, or scored the same, which no number of rows
    separates."""

    @property
    def tied(self) -> bool:
        """Not shown to differ: the interval of the difference contains zero, or the
        difference is not significant once adjusted for the other comparisons."""
        return self.paired.contains_zero() or self.p_adjusted >= ALPHA

    def as_dict(self) -> dict[str, Any]:
        """The comparison as the API, the exports and the report show it."""
        paired = self.paired
        return {
            "leader": self.leader,
            "rows": paired.n,
            "diff": paired.diff,
            "low": paired.low,
            "high": paired.high,
            "p_value": paired.p_value,
            "p_adjusted": self.p_adjusted,
            "test": paired.test,
            "wins": paired.wins,
            "losses": paired.losses,
            "rows_needed": self.rows_needed,
        }


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

    @property
    def runner_up(self) -> VersusLeader | None:
        """The second config against the winner, when they share two rows."""
        ranked = self.ranked
        return ranked[1].versus_leader if len(ranked) > 1 else None


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
    score_rows: dict[str, list[int]] = defaultdict(list)
    """The row of each of ``run_scores``' values; ``scorer_rows`` likewise for ``per_scorer``."""
    scorer_rows: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(list))
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
            scorer_rows[run.config_hash][name].append(run.row_index)
            all_scores[name].append(value)
        score = weighted_score(values, weights) if values else None
        if score is not None:
            run_scores[run.config_hash].append(score)
            score_rows[run.config_hash].append(run.row_index)
            if summary.best_run_score is None or score > summary.best_run_score:
                summary.best_run_id, summary.best_run_score = run.id, score
        elif summary.best_run_id is None:
            summary.best_run_id = run.id

    for digest, summary in configs.items():
        if run_scores[digest]:
            summary.score = statistics.fmean(run_scores[digest])
        summary.scores = {n: statistics.fmean(v) for n, v in sorted(per_scorer[digest].items())}
        summary.p50_latency_ms = _median(latencies[digest])
        _uncertainty(
            summary,
            (score_rows[digest], run_scores[digest]),
            {n: (scorer_rows[digest][n], v) for n, v in per_scorer[digest].items()},
        )

    ranked = sorted(
        configs.values(), key=lambda c: leaderboard_order(c.score, c.completed, c.config_hash)
    )
    compare_with_leader([c for c in ranked if c.score is not None])
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


Scored = tuple[list[int], list[float]]
"""Scores and the dataset row of each, in two lists of one length."""


def _by_row(scored: Scored) -> dict[int, list[float]]:
    """Values grouped by dataset row (several per row with repeats)."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for row, value in zip(*scored, strict=True):
        grouped[row].append(value)
    return grouped


def _row_means(scored: Scored) -> dict[int, float]:
    """Each row's mean score, by row; without repeats (each row once) simply its score."""
    rows, values = scored
    once = dict(zip(rows, values, strict=True))
    if len(once) == len(rows):  # no row twice
        return once
    return {row: sum(found) / len(found) for row, found in _by_row(scored).items()}


def _interval(values: list[float]) -> Interval | None:
    """The interval of a mean score over rows, kept inside [0, 1] where every score lies."""
    binary = significance.is_binary(values)
    return significance.score_interval(values, binary=binary, bounds=(0.0, 1.0))


def _uncertainty(summary: ConfigSummary, scored: Scored, per_scorer: dict[str, Scored]) -> None:
    """The config's intervals over its rows, and with repeats its flaky rows and pass^k."""
    summary.row_scores = _row_means(scored)
    repeated = len(summary.row_scores) != len(scored[0])
    # Each row once: its scores are the row scores already, in the same order.
    summary.interval = _interval(list(summary.row_scores.values()) if repeated else scored[1])
    summary.scorer_intervals = {
        name: found
        for name, values in sorted(per_scorer.items())
        if (found := _interval(list(_row_means(values).values()) if repeated else values[1]))
    }
    if not repeated:
        return  # each row once
    rows = _by_row(scored)
    summary.repeats = max(len(values) for values in rows.values())
    passes = {row: [value >= PASS for value in values] for row, values in rows.items()}
    summary.flaky_rows = [row for row, seen in sorted(passes.items()) if len(set(seen)) > 1]
    complete = [seen for seen in passes.values() if len(seen) == summary.repeats]
    summary.pass_k = sum(all(seen) for seen in complete) / len(complete) if complete else None


def compare_with_leader(ranked: list[ConfigSummary]) -> None:
    """Each config against the first of ``ranked`` on the rows both answered, Holm-adjusted
    over all those comparisons; sets ``versus_leader``."""
    if len(ranked) < 2:
        return
    leader = ranked[0]
    leader_rows, leader_order = leader.row_scores.keys(), list(leader.row_scores)
    everything = list(leader.row_scores.values())
    leader_binary = significance.is_binary(everything)
    found: list[tuple[ConfigSummary, Paired, list[float], list[float], bool]] = []
    for config in ranked[1:]:
        scores = config.row_scores
        if list(scores) == leader_order:  # the common case: the same rows, in the same order
            ours, theirs = everything, list(scores.values())
        elif scores.keys() == leader_rows:
            ours, theirs = everything, [scores[r] for r in leader_order]
        else:
            common = leader_rows & scores.keys()
            ours = [leader.row_scores[row] for row in common]
            theirs = [scores[row] for row in common]
        binary = leader_binary and significance.is_binary(theirs)
        paired = significance.paired(ours, theirs, binary=binary)
        if paired is not None:
            found.append((config, paired, ours, theirs, binary))
    adjusted = significance.holm([paired.p_value for _, paired, *_ in found])
    for (config, paired, ours, theirs, binary), p_value in zip(found, adjusted, strict=True):
        versus = VersusLeader(leader.config_hash, paired, p_value)
        if versus.tied:
            needed = significance.rows_to_separate(ours, theirs, binary=binary)
            versus = VersusLeader(leader.config_hash, paired, p_value, needed)
        config.versus_leader = versus


def choose(
    ranked: Sequence[ConfigSummary],
    config_hash: str | None,
    *,
    field: str = "config_hash",
    experiment_field: str = "experiment_id",
) -> ConfigSummary:
    """The best scored config, or the one ``config_hash`` starts: the leaderboard shows hashes
    cut short, so any prefix that names one config is enough, and one that names several is
    refused with them listed. ``field`` and ``experiment_field`` name the request's fields in
    the refusals."""
    if config_hash is None:
        if not ranked:
            raise Invalid(f"{experiment_field}: the experiment has no scored runs yet")
        return ranked[0]
    prefix = config_hash.strip().lower()
    candidates = [c for c in ranked if c.config_hash.startswith(prefix)]
    if not candidates:
        raise NotFound(f"No scored config {config_hash!r} in this experiment")
    if len(candidates) > 1:
        hashes = ", ".join(c.config_hash for c in candidates)
        raise Invalid(f"{field}: {config_hash!r} matches several configs: {hashes}")
    return candidates[0]
