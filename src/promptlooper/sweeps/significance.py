"""Which differences between sweep configs are real: intervals, paired tests, sample sizes.

Two configs of a sweep answer the same dataset rows, so they are compared row by row (paired):
the row-to-row spread of difficulty cancels out and far fewer rows separate them than an
unpaired test would need. A pass/fail scorer gets the tests made for proportions (a Wilson
interval, an exact McNemar test on the rows where the two disagree); any other score gets the
t distribution. Degenerate inputs (no rows, one row, identical scores) give defined answers
rather than NaN or SciPy's warnings, because they are common in small or early sweeps.

Every quantile and tail comes from SciPy's special functions (``ndtri``, ``stdtr``,
``stdtrit``, ``bdtr``), the code under ``scipy.stats``: its front-ends (``ttest_rel``,
``binomtest``) validate and wrap their inputs at some hundred times the cost, and a
leaderboard makes several tests per config on every load. The tests pin each answer to the
front-end's.

Pure Python and SciPy: no I/O, no web or database imports.
"""

from __future__ import annotations

import functools
import math
import operator
from array import array
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from scipy import special

# Holm-adjusted p-values for comparisons made together (each config against the leader).
from promptlooper.multiplicity import holm as holm

CONFIDENCE = 0.95
_PASS_FAIL = frozenset((0.0, 1.0))
_NEGLIGIBLE = 1e-12
"""A standard deviation this small (relative to the values) is rounding noise of equal
values: 0.3 − 0.1 and 0.4 − 0.2 differ in the last bit."""


@dataclass(slots=True)
class Interval:
    """A mean with its confidence interval over ``n`` values. Not frozen, as ``Paired``
    neither: a leaderboard builds dozens per request, and a frozen dataclass sets each field
    through ``object.__setattr__`` at several times the cost; nothing changes them."""

    mean: float
    low: float
    high: float
    n: int
    method: str
    """``wilson`` (pass/fail values) or ``t``. One value gives a point (low = high = mean):
    nothing measures its spread, and ``n`` says so."""


def is_binary(values: Iterable[float]) -> bool:
    """Whether every value is 0 or 1: a pass/fail scorer (vacuously true of no values).
    Stops at the first other value: most graded scores say so at once."""
    return _PASS_FAIL.issuperset(values)


@functools.lru_cache(maxsize=1024)
def _t_quantile(confidence: float, dof: float) -> float:
    """The two-sided ``confidence`` quantile of Student's t: t.ppf((1 + c) / 2, dof), kept:
    a leaderboard asks for the same few (its configs mostly answered the same rows)."""
    return float(special.stdtrit(dof, (1 + confidence) / 2))


@functools.lru_cache(maxsize=64)
def _z_quantile(probability: float) -> float:
    """The standard normal quantile: norm.ppf(p)."""
    return float(special.ndtri(probability))


def _moments(values: Sequence[float]) -> tuple[float, float]:
    """The mean and the sample standard deviation (0 for one value, or for values equal but
    for rounding). Plain Python: on the few hundred values of a sweep's rows it is several
    times faster than building NumPy arrays."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, 0.0
    spread = math.dist(values, [mean] * n) / math.sqrt(n - 1)  # √Σ(v − mean)², in C
    if spread <= _NEGLIGIBLE * max(1.0, abs(mean)):
        return mean, 0.0
    return mean, spread


def _differences(a: Sequence[float], b: Sequence[float]) -> array[float]:
    """Packed: a large sweep's configs differ on every one of ~100,000 rows, and each boxed
    difference would outweigh its 8 bytes four times over."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need one of each per row: {len(a)} and {len(b)}")
    return array("d", map(operator.sub, b, a))


def score_interval(
    values: Sequence[float],
    *,
    binary: bool,
    confidence: float = CONFIDENCE,
    bounds: tuple[float, float] | None = None,
) -> Interval | None:
    """The mean and its interval: Wilson for pass/fail (it stays inside [0, 1] and keeps its
    coverage near 0 and 1, where the normal approximation collapses), t otherwise. With
    ``bounds``, where every value lies (scores in [0, 1]), the interval is cut to them: a t
    interval of scores near 1 would otherwise reach past 1."""
    n = len(values)
    if n == 0:
        return None
    if binary:
        mean = sum(values) / n
        # Wilson's score interval, as binomtest(k, n).proportion_ci(method="wilson") has it.
        z = _z_quantile((1 + confidence) / 2)
        centre = (mean + z * z / (2 * n)) / (1 + z * z / n)
        half = z / (1 + z * z / n) * math.sqrt(mean * (1 - mean) / n + z * z / (4 * n * n))
        low, high = min(mean, centre - half), max(mean, centre + half)  # not by rounding
        return Interval(mean, max(0.0, low), min(1.0, high), n, "wilson")
    mean, spread = _moments(values)
    if spread == 0.0:
        return Interval(mean, mean, mean, n, "t")
    half = _t_quantile(confidence, n - 1) * spread / math.sqrt(n)
    low, high = mean - half, mean + half
    if bounds is not None:
        low, high = max(bounds[0], low), min(bounds[1], high)
    return Interval(mean, low, high, n, "t")


@dataclass(slots=True)
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
    diffs = _differences(a, b)
    n = len(diffs)
    if n < 2:
        return None
    # Counted in C, without a sorted copy: boxed, a large sweep's differences would outweigh
    # their packed array four times over.
    wins, losses = sum(map((0.0).__lt__, diffs)), sum(map((0.0).__gt__, diffs))
    mean, spread = _moments(diffs)
    if spread == 0.0:
        # Every row moved by the same amount: no spread to test against.
        mean = 0.0 if abs(mean) <= _NEGLIGIBLE else mean
        low = high = mean
        p_value = 1.0 if mean == 0.0 else 0.0
    else:
        error = spread / math.sqrt(n)
        half = _t_quantile(confidence, n - 1) * error
        low, high = mean - half, mean + half
        if not binary:
            # ttest_rel(b, a): two tails of t with n - 1 degrees of freedom.
            p_value = float(2 * special.stdtr(n - 1, -abs(mean) / error))
    if binary:
        # Exact McNemar: binomtest(wins, wins + losses, 0.5), whose two tails are equal.
        fewer, discordant = min(wins, losses), wins + losses
        p_value = float(2 * special.bdtr(fewer, discordant, 0.5)) if discordant else 1.0
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
    diffs = _differences(a, b)
    if not diffs:
        return None
    mean, spread = _moments(diffs)
    effect = abs(mean)
    if effect <= _NEGLIGIBLE:
        return None
    z_alpha, z_power = _z_quantile(1 - alpha / 2), _z_quantile(power)
    if binary:
        discordant = sum(map((0.0).__ne__, diffs)) / len(diffs)
        root = math.sqrt(max(discordant - effect**2, 0.0))
        needed = (z_alpha * math.sqrt(discordant) + z_power * root) ** 2 / effect**2
        return max(2, math.ceil(needed))
    needed = ((z_alpha + z_power) * spread / effect) ** 2
    for _ in range(20):  # converges in a few steps: the t quantiles shrink as n grows
        dof = max(needed, 2.0) - 1
        quantiles = special.stdtrit(dof, 1 - alpha / 2) + special.stdtrit(dof, power)
        refined = float(quantiles * spread / effect) ** 2
        if abs(refined - needed) < 0.5:
            needed = refined
            break
        needed = refined
    return max(2, math.ceil(needed))
