"""Per-variant performance statistics. Pure: plain numbers in, numbers out (NumPy/SciPy).

Success rates come with a Wilson score interval (well behaved at small n and near 0 or 1);
mean quality with a Student-t interval; latencies as p50/p95. A value a record does not give
(quality, latency, tokens, cost) is unknown: it is left out of that value's statistic, never
counted as zero, and the means say over how many records they are taken.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

CONFIDENCE = 0.95


def wilson_interval(successes: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """The Wilson score interval for a binomial proportion; (0, 1) when n is 0."""
    if n == 0:
        return 0.0, 1.0
    from scipy.stats import norm

    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    margin = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - margin), min(1.0, centre + margin)


def mean_interval(
    values: Sequence[float], confidence: float = CONFIDENCE
) -> tuple[float | None, float | None, float | None]:
    """The mean and its Student-t interval; no interval below two values."""
    if not values:
        return None, None, None
    import numpy as np
    from scipy.stats import t

    data = np.asarray(values, dtype=float)
    mean = float(data.mean())
    if len(data) < 2:
        return mean, None, None
    half = float(
        t.ppf(0.5 + confidence / 2, len(data) - 1) * data.std(ddof=1) / math.sqrt(len(data))
    )
    return mean, mean - half, mean + half


def percentile(values: Sequence[float], q: float) -> float | None:
    if not values:
        return None
    import numpy as np

    return float(np.percentile(np.asarray(values, dtype=float), q))


@dataclass(frozen=True, slots=True)
class Sample:
    latency_ms: float | None
    tokens_in: int | None
    tokens_out: int | None
    cost: float | None
    success: bool
    quality: float | None


@dataclass(frozen=True, slots=True)
class Summary:
    n: int
    success_rate: float | None
    success_ci: tuple[float, float]
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    mean_tokens_in: float | None
    tokens_in_n: int
    mean_tokens_out: float | None
    tokens_out_n: int
    mean_cost: float | None
    cost_n: int
    quality_mean: float | None
    quality_ci: tuple[float | None, float | None]
    quality_n: int


def _known(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None]


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def summarise(samples: Sequence[Sample]) -> Summary:
    n = len(samples)
    successes = sum(s.success for s in samples)
    latencies = _known([s.latency_ms for s in samples])
    qualities = _known([s.quality for s in samples])
    tokens_in = _known([s.tokens_in for s in samples])
    tokens_out = _known([s.tokens_out for s in samples])
    costs = _known([s.cost for s in samples])
    quality_mean, quality_low, quality_high = mean_interval(qualities)
    return Summary(
        n=n,
        success_rate=successes / n if n else None,
        success_ci=wilson_interval(successes, n),
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        mean_tokens_in=_mean(tokens_in),
        tokens_in_n=len(tokens_in),
        mean_tokens_out=_mean(tokens_out),
        tokens_out_n=len(tokens_out),
        mean_cost=_mean(costs),
        cost_n=len(costs),
        quality_mean=quality_mean,
        quality_ci=(quality_low, quality_high),
        quality_n=len(qualities),
    )
