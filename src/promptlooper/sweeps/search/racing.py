"""Racing's decisions: which rows each slice covers, and which configs the data rule out.

Every config answers the same rows, so after each slice each config is compared with the
leader, paired over the rows both completed (exact McNemar for pass/fail scores, a paired
t-test otherwise), with the p-values Holm-adjusted for the number of comparisons made
together. A config significantly worse than the leader is eliminated; the others run on.
A config whose every run so far failed has nothing to pair, so no test can rule it out: it is
eliminated as soon as some other config has scores (``ALL_FAILED``), rather than spending
calls on every row of the dataset.

Pure: no I/O, no web or database imports.
"""

from __future__ import annotations

import random
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

from promptlooper.sweeps.significance import holm, is_binary, paired

RowScores = Mapping[int, float]
"""A config's score per dataset row (the mean over repeats)."""

ALL_FAILED = "all runs failed"


@dataclass(frozen=True, slots=True)
class Decision:
    config_hash: str
    lost_to: str
    rows: int
    effect: float | None
    p_value: float | None
    reason: str | None = None
    """Why, when not by a paired test (``effect`` and ``p_value`` are then None)."""


def row_order(n_rows: int, seed: int) -> list[int]:
    """The dataset's rows in the order the race uses them: shuffled with ``seed``, so that
    the first slices are a fair sample rather than the file's first (often similar) rows."""
    order = list(range(n_rows))
    random.Random(seed).shuffle(order)
    return order


def slice_ends(n_rows: int, first: int) -> list[int]:
    """How many rows the race has used after each slice: ``first``, then doubling, up to
    every row. Doubling keeps the number of decisions logarithmic in the rows, so the
    multiple-comparison penalty stays small, while a clear loser stops early."""
    ends, end = [], min(first, n_rows)
    while end < n_rows:
        ends.append(end)
        end *= 2
    return [*ends, n_rows]


def leader(scores: Mapping[str, RowScores]) -> str:
    """The config with the best mean score (ties go to the smaller hash, for stability)."""
    return min(scores, key=lambda h: (-statistics.fmean(scores[h].values()), h))


def eliminate(
    scores: Mapping[str, RowScores], alpha: float, failed: Mapping[str, int] | None = None
) -> list[Decision]:
    """The configs among ``scores`` that are significantly worse than the leader at
    ``alpha``, after Holm's adjustment over every comparison made, and those in ``failed``
    (config hash → rows on which its runs failed) with no scored row at all."""
    scored = {digest: rows for digest, rows in scores.items() if rows}
    if not scored:
        return []
    best = leader(scored)
    failures = [
        Decision(digest, best, rows, None, None, ALL_FAILED)
        for digest, rows in sorted((failed or {}).items())
        if rows and digest not in scored
    ]
    return _worse(scored, alpha) + failures


def _worse(scores: Mapping[str, RowScores], alpha: float) -> list[Decision]:
    if len(scores) < 2:
        return []
    best = leader(scores)
    binary = all(is_binary(rows.values()) for rows in scores.values())
    compared = []
    for digest, rows in scores.items():
        if digest == best:
            continue
        common = sorted(rows.keys() & scores[best].keys())
        result = paired([scores[best][r] for r in common], [rows[r] for r in common], binary=binary)
        if result is not None:
            compared.append((digest, result))
    adjusted = holm([result.p_value for _, result in compared])
    return [
        Decision(digest, best, result.n, result.diff, p_value)
        for (digest, result), p_value in zip(compared, adjusted, strict=True)
        if p_value < alpha and result.diff < 0
    ]
