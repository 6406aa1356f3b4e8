"""Which differences between sweep configs are real: intervals, paired tests, sample sizes.

Two configs of a sweep answer the same dataset rows, so they are compared row by row (paired):
the row-to-row spread of difficulty cancels out and far fewer rows separate them than an
unpaired test would need. A pass/fail scorer gets the tests made for proportions (a Wilson
interval, an exact McNemar test on the rows where the two disagree); any other score gets the
t distribution. Every distribution comes from SciPy. Degenerate inputs (no rows, one row,
identical scores) give defined answers rather than NaN or SciPy's warnings, because they are
common in small or early sweeps.

Pure NumPy/SciPy: no I/O, no web or database imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

# Holm-adjusted p-values for comparisons made together (each config against the leader).
from promptlooper.multiplicity import holm as holm

CONFIDENCE = 0.95
_NEGLIGIBLE = 1e-12
"""A standard deviation this small (relative to the values) is rounding noise of equal
values: 0.3 − 0.1 and 0.4 − 0.2 differ in the last bit."""


@dataclass(frozen=True, slots=True)
class Interval:
    """A mean with its confidence interval over ``n`` values."""

    mean: float
    low: float
    high: float
    n: int
    method: str
    """``wilson`` (pass/fail values) or ``t``. One value gives a point (low = high = mean):
    nothing measures its spread, and ``n`` says so."""


def is_binary(values: Iterable[float]) -> bool:
    """Whether every value is 0 or 1: a pass/fail scorer (vacuously true of no values)."""
    return all(v in (0.0, 1.0) for v in values)


def _spread(data: np.ndarray) -> float:
    """The sample standard deviation, 0 for one value or values equal but for rounding."""
    if len(data) < 2:
        return 0.0
    spread = float(data.std(ddof=1))
    return 0.0 if spread <= _NEGLIGIBLE * max(1.0, float(np.abs(data).max())) else spread


def score_interval(
    values: Sequence[float], *, binary: bool, confidence: float = CONFIDENCE
) -> Interval | None:
    """The mean and its interval: Wilson for pass/fail (it stays inside [0, 1] and keeps its
    coverage near 0 and 1, where the normal approximation collapses), t otherwise."""
    n = len(values)
    if n == 0:
        return None
    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if binary:
        found = sp.binomtest(round(float(data.sum())), n).proportion_ci(confidence, "wilson")
        return Interval(mean, float(found.low), float(found.high), n, "wilson")
    spread = _spread(data)
    if spread == 0.0:
        return Interval(mean, mean, mean, n, "t")
    half = float(sp.t.ppf((1 + confidence) / 2, n - 1)) * spread / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n, "t")


@dataclass(frozen=True, slots=True)
class Paired:
    """B against A over the rows both answered: ``diff`` is mean(b − a), with its interval."""

    n: int
    diff: float
    low: float
    high: float
    p_value: float
    test: str
    """``paired-t`` or ``mcnemar`` (exact, for pass/fail scores)."""
    wins: int = 0
    """Rows where B scored higher than A."""
    losses: int = 0
    """Rows where B scored lower than A."""

    def contains_zero(self) -> bool:
        return self.low <= 0.0 <= self.high


def paired(
    a: Sequence[float], b: Sequence[float], *, binary: bool, confidence: float = CONFIDENCE
) -> Paired | None:
    """Paired comparison of two configs' scores on the same rows (``a[i]`` and ``b[i]`` are
    one row's). The interval is the t interval of the mean difference in both cases; for
    pass/fail scores the p-value is McNemar's exact test, which only the rows where the two
    disagree inform. None under two rows."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need one of each per row: {len(a)} and {len(b)}")
    n = len(a)
    if n < 2:
        return None
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    wins, losses = int((diffs > 0).sum()), int((diffs < 0).sum())
    mean = float(diffs.mean())
    spread = _spread(diffs)
    if spread == 0.0:
        # Every row moved by the same amount: no spread to test against.
        mean = 0.0 if abs(mean) <= _NEGLIGIBLE else mean
        low = high = mean
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        half = float(sp.t.ppf((1 + confidence) / 2, n - 1)) * spread / math.sqrt(n)
        low, high = mean - half, mean + half
        p_value = float(sp.ttest_rel(b, a).pvalue)
    if binary:
        discordant = wins + losses
        p_value = float(sp.binomtest(wins, discordant).pvalue) if discordant else 1.0
        return Paired(n, mean, low, high, min(1.0, p_value), "mcnemar", wins, losses)
    return Paired(n, mean, low, high, p_value, "paired-t", wins, losses)


def rows_to_separate(
    a: Sequence[float],
    b: Sequence[float],
    *,
    binary: bool,
    power: float = 0.8,
    alpha: float = 0.05,
) -> int | None:
    """How many paired rows a two-sided test at ``alpha`` needs to detect the observed mean
    difference with probability ``power``, taking the observed spread as the truth; None when
    the observed difference is zero, since no number of rows separates equal configs.

    Pass/fail scores use Connor's sample size for McNemar's test; other scores the paired t
    test's, refined from the normal quantiles to the t quantiles of the resulting size."""
    if len(a) != len(b) or not a:
        return None
    diffs = np.asarray(b, dtype=float) - np.asarray(a, dtype=float)
    effect = abs(float(diffs.mean()))
    if effect <= _NEGLIGIBLE:
        return None
    z_alpha, z_power = sp.norm.ppf(1 - alpha / 2), sp.norm.ppf(power)
    if binary:
        discordant = float((diffs != 0).mean())
        root = math.sqrt(max(discordant - effect**2, 0.0))
        needed = (z_alpha * math.sqrt(discordant) + z_power * root) ** 2 / effect**2
        return max(2, math.ceil(needed))
    spread = _spread(diffs)
    needed = ((z_alpha + z_power) * spread / effect) ** 2
    for _ in range(20):  # converges in a few steps: the t quantiles shrink as n grows
        dof = max(needed, 2.0) - 1
        refined = ((sp.t.ppf(1 - alpha / 2, dof) + sp.t.ppf(power, dof)) * spread / effect) ** 2
        if abs(refined - needed) < 0.5:
            needed = refined
            break
        needed = refined
    return max(2, math.ceil(needed))
