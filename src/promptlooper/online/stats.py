"""A/B statistics that agree with GrowthBook's stats engine (gbstats) to numerical precision.

Every comparison is treatment against control on per-unit sufficient statistics (n, Σx, Σx²):

- the effect is the relative lift (μt − μc) / μc (or the absolute difference), its variance
  the delta-method variance, with Welch–Satterthwaite degrees of freedom;
- frequentist: a two-sided t-test p-value and interval; sequential: the always-valid
  mixture confidence sequence and p-value (Waudby-Smith et al., tuning parameter 5,000),
  safe for teams who look at results every day;
- Bayesian with a flat prior: the posterior of the lift is Normal(estimate, √variance), giving
  the chance to beat control, a credible interval and the expected loss (risk) of shipping
  either arm;
- Holm–Bonferroni and Benjamini–Hochberg adjustments for many variants or metrics (from
  ``promptlooper.multiplicity``, which the sweeps share), and the sample-ratio-mismatch
  chi-square test.

Pure NumPy/SciPy: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from scipy import stats as sp

from promptlooper.multiplicity import benjamini_hochberg as benjamini_hochberg
from promptlooper.multiplicity import holm as holm

ALPHA = 0.05
SEQUENTIAL_TUNING = 5000.0


@dataclass(frozen=True, slots=True)
class Moments:
    """Sufficient statistics of one arm: units, Σx and Σx² (x per unit)."""

    n: int
    total: float
    total_squares: float
    proportion: bool = False
    """A 0/1 metric (converted or not): variance p(1 − p), as gbstats has it."""

    @classmethod
    def binary(cls, n: int, successes: float) -> Moments:
        return cls(n, successes, successes, proportion=True)

    @property
    def mean(self) -> float:
        return self.total / self.n if self.n else 0.0

    @property
    def variance(self) -> float:
        if self.proportion:
            return self.mean * (1 - self.mean)
        if self.n <= 1:
            return 0.0
        return (self.total_squares - self.total**2 / self.n) / (self.n - 1)


@dataclass(frozen=True, slots=True)
class Effect:
    estimate: float
    variance: float
    dof: float


def effect(control: Moments, treatment: Moments, *, relative: bool = True) -> Effect | None:
    """The lift and its delta-method variance; None when it is not defined (an empty arm, a
    control mean of zero for a relative lift, or an arm without variance)."""
    a, b = control, treatment
    if a.n < 2 or b.n < 2 or a.variance <= 0 or b.variance <= 0:
        return None
    if relative and a.mean == 0:
        return None
    if relative:
        estimate = (b.mean - a.mean) / a.mean
        variance = b.variance / (a.mean**2 * b.n) + a.variance * b.mean**2 / (a.mean**4 * a.n)
    else:
        estimate = b.mean - a.mean
        variance = b.variance / b.n + a.variance / a.n
    va, vb = a.variance / a.n, b.variance / b.n
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return Effect(estimate, variance, dof)


def frequentist(found: Effect, alpha: float = ALPHA) -> dict[str, Any]:
    """Two-sided Welch t-test: p-value and the (1 − alpha) confidence interval."""
    se = math.sqrt(found.variance)
    p_value = 2 * (1 - sp.t.cdf(abs(found.estimate) / se, found.dof))
    width = sp.t.ppf(1 - alpha / 2, found.dof) * se
    return {
        "p_value": float(p_value),
        "ci": [found.estimate - width, found.estimate + width],
    }


def sequential(
    found: Effect, n_total: int, alpha: float = ALPHA, tuning: float = SEQUENTIAL_TUNING
) -> dict[str, Any]:
    """Always-valid p-value and confidence sequence, valid however often results are read."""
    rho2 = (-2 * math.log(alpha) + math.log(-2 * math.log(alpha) + 1)) / tuning
    s2 = found.variance * n_total
    growth = n_total * rho2 + 1
    width = math.sqrt(s2) * math.sqrt(
        2 * growth * math.log(math.sqrt(growth) / alpha) / (n_total**2 * rho2)
    )
    st2 = found.estimate**2 * n_total / found.variance
    log_evalue = rho2 * st2 / (2 * growth) - math.log(growth) / 2  # in logs: no overflow
    return {
        "p_value": min(1.0, math.exp(-log_evalue)),
        "ci": [found.estimate - width, found.estimate + width],
    }


def bayesian(found: Effect, alpha: float = ALPHA) -> dict[str, Any]:
    """Flat prior: chance to beat control, credible interval, and the expected loss of
    choosing control (``risk_control``) or the treatment (``risk_treatment``)."""
    mu, sigma = found.estimate, math.sqrt(found.variance)
    p_control_better = float(sp.norm.cdf(0.0, loc=mu, scale=sigma))
    mean_positive = _truncated_mean(mu, sigma, 0.0, math.inf)
    mean_negative = _truncated_mean(mu, sigma, -math.inf, 0.0)
    low, high = sp.norm.ppf([alpha / 2, 1 - alpha / 2], mu, sigma)
    return {
        "chance_to_beat_control": float(sp.norm.sf(0.0, mu, sigma)),
        "ci": [float(low), float(high)],
        "risk_control": (1 - p_control_better) * mean_positive,
        "risk_treatment": -p_control_better * mean_negative,
    }


def _truncated_mean(mu: float, sigma: float, low: float, high: float) -> float:
    a, b = (low - mu) / sigma, (high - mu) / sigma
    return float(sp.truncnorm.mean(a, b, loc=mu, scale=sigma))


def srm_p_value(observed: Sequence[float], weights: Sequence[float]) -> float:
    """Chi-square test of the observed split against the configured weights (1.0 with no
    data); a tiny p-value means assignment or tracking is broken."""
    total = sum(observed)
    if not total:
        return 1.0
    weight_sum = sum(weights)
    statistic = 0.0
    for seen, weight in zip(observed, weights, strict=True):
        if weight <= 0:
            continue
        expected = weight / weight_sum * total
        statistic += (seen - expected) ** 2 / expected
    return float(sp.chi2.sf(statistic, len(observed) - 1))


def compare(control: Moments, treatment: Moments, alpha: float = ALPHA) -> dict[str, Any]:
    """Everything the results show for one metric of one treatment arm."""
    relative = effect(control, treatment, relative=True)
    absolute = effect(control, treatment, relative=False)
    if relative is None or absolute is None:
        return {
            "control_mean": control.mean,
            "treatment_mean": treatment.mean,
            "error": "not enough data: each arm needs two units, variance and a non-zero "
            "control mean",
        }
    return {
        "control_mean": control.mean,
        "treatment_mean": treatment.mean,
        "relative_lift": relative.estimate,
        "absolute_lift": absolute.estimate,
        "frequentist": frequentist(relative, alpha),
        "absolute_ci": frequentist(absolute, alpha)["ci"],
        "sequential": sequential(relative, control.n + treatment.n, alpha),
        "bayesian": bayesian(relative, alpha),
    }
