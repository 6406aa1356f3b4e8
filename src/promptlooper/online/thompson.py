"""Thompson sampling for bandit experiments. Pure NumPy: no I/O.

Each arm's mean on the primary metric has, for the sample sizes a bandit acts on, a normal
posterior centred on the observed mean with the variance of that mean (the same normal
approximation the results' Bayesian block uses). An arm's weight is the chance that it is the
best arm, estimated from joint draws of those posteriors, then lifted to a floor so that no arm
stops learning: weight = floor + (1 − k·floor) · P(best).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

DRAWS = 10_000
MIN_UNITS = 2
"""Units an arm needs (two, for a variance) before weights move away from the allocations."""


def chance_best(
    means: Sequence[float],
    variances: Sequence[float],
    units: Sequence[int],
    *,
    higher_is_better: bool,
    rng: np.random.Generator,
    draws: int = DRAWS,
) -> list[float] | None:
    """P(arm is best) per arm; None while an arm has too few units or no arm varies (the
    draws would then only say which arm came first)."""
    if min(units) < MIN_UNITS or not any(v > 0 for v in variances):
        return None
    n = np.asarray(units, dtype=float)
    scale = np.sqrt(np.maximum(np.asarray(variances, dtype=float), 0.0) / n)
    samples = rng.normal(np.asarray(means, dtype=float)[:, None], scale[:, None], (len(n), draws))
    best = samples.argmax(axis=0) if higher_is_better else samples.argmin(axis=0)
    return (np.bincount(best, minlength=len(n)) / draws).tolist()
