"""Aggregates over an experiment's runs: the leaderboard, score distributions, tokens, timing.

Pure functions over plain rows, shared by the leaderboard endpoint, the exports and the CLI.
A run's weighted score is Σ wᵢ·vᵢ / Σ wᵢ over its scores with the experiment's weights; a
config's score is the mean of its runs' weighted scores.

Each score comes with how sure it is: an interval over the dataset rows (a row's repeats are
averaged first, since repeats of one row are not independent samples), and each config is
compared with the leader on the rows both answered, the p-values adjusted for making all those
comparisons at once (``significance``).

Runs are tallied one at a time (``Tally``), so a caller can read them from the database a page
at a time: fed config by config, only the config being read holds per-run values, and a closed
config keeps one packed score per row (``RowScores``), all the comparison with the leader needs.
What spans every config (each scorer's spread, the runs' timing) is kept as running totals, so
the whole tally does not grow with the number of runs; the one figure no running total gives,
the median duration, the caller supplies (``Tally.result``).
"""

from __future__ import annotations

import math
import statistics
import uuid
from array import array
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
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


class RowScores(Mapping[int, float]):
    """A config's score on each row it answered, by row index, packed in arrays sorted by row:
    a leaderboard keeps one for every config until all are compared with the leader, and as a
    dict of Python numbers it would take several times the memory of the numbers. A config
    that answered every row (the common case) keeps its scores alone, the rows implied, and
    scores that are all 0 or 1 (a pass/fail scorer's) are kept a byte each: with a dozen
    configs on a large dataset, eight bytes a score are most of what a leaderboard holds
    until the comparisons. They read back as the same floats."""

    __slots__ = ("_rows", "_values")

    def __init__(self, rows: Sequence[int], values: Sequence[float]) -> None:
        """``rows`` (each once) and the score of each, in any order."""
        if any(later <= earlier for earlier, later in pairwise(rows)):
            order = sorted(range(len(rows)), key=rows.__getitem__)
            rows, values = [rows[i] for i in order], [values[i] for i in order]
        # Distinct and sorted: from 0 to len - 1 they are every row.
        every = not rows or (rows[0] == 0 and rows[-1] == len(rows) - 1)
        self._rows = None if every else array("i", rows)  # a dataset's rows fit in 32 bits
        binary = significance.is_binary(values)
        self._values = array("B", map(int, values)) if binary else array("d", values)

    def _row_indices(self) -> Sequence[int]:
        return range(len(self._values)) if self._rows is None else self._rows

    def __getitem__(self, row: int) -> float:
        rows = self._row_indices()
        at = bisect_left(rows, row)
        if at == len(rows) or rows[at] != row:
            raise KeyError(row)
        return float(self._values[at])

    def __iter__(self) -> Iterator[int]:
        return iter(self._row_indices())

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"RowScores({dict(self.items())!r})"

    def scores(self) -> Sequence[float]:
        """The scores in row order, packed (the array itself, not to be changed, unless they
        are kept a byte each: then a copy as floats, one config's at a time)."""
        return self._values if self._values.typecode == "d" else array("d", self._values)

    def aligned(self, other: RowScores) -> tuple[Sequence[float], Sequence[float]]:
        """This mapping's and ``other``'s scores on the rows both answered, row by row."""
        ours, found = self.scores(), other.scores()
        if len(self) == len(other) and self._rows == other._rows:  # both every row, mostly
            return ours, found
        theirs = dict(zip(other._row_indices(), found, strict=True))
        pairs = zip(self._row_indices(), ours, strict=True)
        common = [(ours, theirs[row]) for row, ours in pairs if row in theirs]
        return [ours for ours, _ in common], [found for _, found in common]


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
    row_scores: RowScores = field(default_factory=lambda: RowScores((), ()))
    """Each answered row's weighted score (the mean of its scored repeats), by row index."""
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
    """The population standard deviation."""


class RunningStats:
    """Count, mean, extremes and spread of values seen one at a time, in constant memory: the
    mean and the sum of squared deviations are updated as each value comes (Welford's method,
    which stays accurate where a sum of squares would cancel)."""

    __slots__ = ("_squares", "maximum", "mean", "minimum", "n")

    def __init__(self) -> None:
        self.n = 0
        self.mean = self._squares = 0.0
        self.minimum = math.inf
        self.maximum = -math.inf

    def add(self, value: float) -> None:
        self.n += 1
        delta = value - self.mean
        self.mean += delta / self.n
        self._squares += delta * (value - self.mean)
        self.minimum = min(self.minimum, value)
        self.maximum = max(self.maximum, value)

    @property
    def stdev(self) -> float:
        """The population standard deviation (0 for fewer than two values)."""
        return math.sqrt(max(self._squares, 0.0) / self.n) if self.n > 1 else 0.0

    def as_scorer_stats(self) -> ScorerStats:
        return ScorerStats(self.n, self.mean, self.minimum, self.maximum, self.stdev)


@dataclass(frozen=True, slots=True)
class Timing:
    """How long the completed runs took, each from its start to its end."""

    runs: int
    fastest_ms: float
    median_ms: float
    mean_ms: float
    slowest_ms: float


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
    timing: Timing | None
    """None when no completed run has a duration."""

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


def _median(values: Sequence[float]) -> float | None:
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
    tally = Tally(weights)
    durations = []
    for run in runs:
        tally.add(run, scores.get(run.id, {}))
        if run.status == "completed" and run.duration_ms is not None:
            durations.append(run.duration_ms)
    return tally.result(_median(durations))


@dataclass
class _ConfigRuns:
    """What one config's statistics need of its runs, until the config is closed."""

    scored: Scored = field(default_factory=lambda: _packed())
    """Each scored run's row and weighted score."""
    per_scorer: dict[str, Scored] = field(default_factory=dict)
    latencies: array[float] = field(default_factory=lambda: array("d"))


class Tally:
    """An experiment's summary built from its runs as they come, each with its scores.

    With ``ordered``, runs arrive config by config (the runs table's key order) and a config
    is closed, its per-run values dropped, when the next one begins; otherwise every config
    stays open until ``result``."""

    def __init__(self, weights: Mapping[str, float], *, ordered: bool = False) -> None:
        self.weights = weights
        self.ordered = ordered
        self.counts: dict[str, int] = defaultdict(int)
        self.configs: dict[str, ConfigSummary] = {}
        self.open: dict[str, _ConfigRuns] = {}
        self.scorers: dict[str, RunningStats] = {}
        self.durations = RunningStats()
        self.tokens_in = self.tokens_out = self.cached = 0
        self.cost = 0.0

    def add(self, run: RunRow, values: Mapping[str, float]) -> None:
        """Count ``run``, whose scores are ``values`` (empty when it has none)."""
        self.counts[run.status] += 1
        summary = self.configs.get(run.config_hash)
        if summary is None:
            if self.ordered:
                self._close_all()
            summary = self.configs[run.config_hash] = ConfigSummary(run.config_hash, run.parameters)
            self.open[run.config_hash] = _ConfigRuns()
        summary.runs += 1
        summary.tokens_in += run.tokens_in
        summary.tokens_out += run.tokens_out
        summary.cost += run.cost
        self.tokens_in += run.tokens_in
        self.tokens_out += run.tokens_out
        self.cost += run.cost
        if run.status == "failed":
            summary.failed += 1
        if run.status != "completed":
            return
        summary.completed += 1
        self.cached += run.cached
        if run.duration_ms is not None:
            self.durations.add(run.duration_ms)
        pending = self.open[run.config_hash]
        if run.latency_ms is not None and not run.cached:
            pending.latencies.append(run.latency_ms)
        for name, value in values.items():
            if name not in pending.per_scorer:
                pending.per_scorer[name] = _packed()
            rows, found = pending.per_scorer[name]
            rows.append(run.row_index)
            found.append(value)
            if name not in self.scorers:
                self.scorers[name] = RunningStats()
            self.scorers[name].add(value)
        score = weighted_score(values, self.weights) if values else None
        if score is not None:
            pending.scored[0].append(run.row_index)
            pending.scored[1].append(score)
            if summary.best_run_score is None or score > summary.best_run_score:
                summary.best_run_id, summary.best_run_score = run.id, score
        elif summary.best_run_id is None:
            summary.best_run_id = run.id

    def _close_all(self) -> None:
        for digest, pending in self.open.items():
            summary = self.configs[digest]
            if pending.scored[1]:
                summary.score = statistics.fmean(pending.scored[1])
            summary.scores = {
                n: statistics.fmean(v) for n, (_, v) in sorted(pending.per_scorer.items())
            }
            summary.p50_latency_ms = _median(pending.latencies)
            _uncertainty(summary, pending.scored, pending.per_scorer)
        self.open.clear()

    def result(self, median_duration_ms: float | None) -> ExperimentSummary:
        """The summary of the runs added so far, given the median of their durations (the
        durations of the completed runs that have one)."""
        self._close_all()
        ranked = sorted(
            self.configs.values(),
            key=lambda c: leaderboard_order(c.score, c.completed, c.config_hash),
        )
        compare_with_leader([c for c in ranked if c.score is not None])
        return ExperimentSummary(
            counts=dict(self.counts),
            configs=ranked,
            scorers={name: found.as_scorer_stats() for name, found in sorted(self.scorers.items())},
            weights=dict(self.weights),
            tokens_in=int(self.tokens_in),
            tokens_out=int(self.tokens_out),
            cost=float(self.cost),
            cached_runs=int(self.cached),
            timing=self._timing(median_duration_ms),
        )

    def _timing(self, median_ms: float | None) -> Timing | None:
        found = self.durations
        if not found.n or median_ms is None:
            return None
        return Timing(found.n, found.minimum, median_ms, found.mean, found.maximum)


Scored = tuple[Sequence[int], Sequence[float]]
"""Scores and the dataset row of each, in two sequences of one length."""


def _packed() -> tuple[array[int], array[float]]:
    """An empty ``Scored`` as two packed arrays: a config's runs are held as numbers, not as
    Python objects scattered among the pages read meanwhile."""
    return array("i"), array("d")


def _by_row(scored: Scored) -> dict[int, list[float]]:
    """Values grouped by dataset row (several per row with repeats)."""
    grouped: dict[int, list[float]] = defaultdict(list)
    for row, value in zip(*scored, strict=True):
        grouped[row].append(value)
    return grouped


def _row_means(scored: Scored) -> RowScores:
    """Each row's mean score, by row; without repeats (each row once) simply its score."""
    rows, values = scored
    if len(set(rows)) == len(rows):
        return RowScores(rows, values)
    means = {row: sum(found) / len(found) for row, found in _by_row(scored).items()}
    return RowScores(list(means), list(means.values()))


def _interval(values: Sequence[float]) -> Interval | None:
    """The interval of a mean score over rows, kept inside [0, 1] where every score lies."""
    binary = significance.is_binary(values)
    return significance.score_interval(values, binary=binary, bounds=(0.0, 1.0))


def _uncertainty(summary: ConfigSummary, scored: Scored, per_scorer: dict[str, Scored]) -> None:
    """The config's intervals over its rows, and with repeats its flaky rows and pass^k."""
    summary.row_scores = _row_means(scored)
    summary.interval = _interval(summary.row_scores.scores())
    repeated = len(summary.row_scores) != len(scored[0])
    summary.scorer_intervals = {
        name: found
        for name, values in sorted(per_scorer.items())
        if (found := _interval(_row_means(values).scores() if repeated else values[1]))
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
    leader_binary = significance.is_binary(leader.row_scores.scores())
    found: list[tuple[ConfigSummary, Paired, bool]] = []
    for config in ranked[1:]:
        ours, theirs = leader.row_scores.aligned(config.row_scores)
        binary = leader_binary and significance.is_binary(theirs)
        paired = significance.paired(ours, theirs, binary=binary)
        if paired is not None:
            found.append((config, paired, binary))
    adjusted = significance.holm([paired.p_value for _, paired, _ in found])
    for (config, paired, binary), p_value in zip(found, adjusted, strict=True):
        versus = VersusLeader(leader.config_hash, paired, p_value)
        if versus.tied:
            # Aligned again rather than kept from above: every config's rows held at once
            # would outweigh the rest of a large sweep's leaderboard.
            ours, theirs = leader.row_scores.aligned(config.row_scores)
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
