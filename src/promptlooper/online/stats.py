"""A/B statistics that agree with GrowthBook's stats engine (gbstats) to numerical precision.

Every comparison is treatment against control on per-unit sufficient statistics (n, Σx, Σx²):

- the effect is the relative lift (μt − μc) / μc (or the absolute difference), its variance
  the delta-method variance, with Welch–Satterthwaite degrees of freedom;
- frequentist: a two-sided t-test p-value and interval; sequential: the always-valid
  mixture confidence sequence and p-value (Waudby-Smith et al., tuning parameter 5,000),
  safe for teams who look at results every day;
- ratio metrics (Σ numerator / Σ denominator over units, cost per call) with the delta-method
  variance of gbstats' RatioStatistic, and CUPED: a mean metric adjusted by the same metric
  before exposure, with the θ pooled over both arms as gbstats' RegressionAdjustedStatistic;
- Bayesian with a flat prior, or the proper prior GrowthBook offers (Normal(0, 0.3²) on the
  relative lift): the posterior of the lift is normal, giving the chance to beat control, a
  credible interval and the expected loss (risk) of shipping either arm;
- power: the power a comparison reaches, the minimum detectable effect for a sample size, and
  the sample size an effect needs (two-sided test on the delta-method variance);
- Holm–Bonferroni and Benjamini–Hochberg adjustments for many variants or metrics (from
  ``promptlooper.multiplicity``, which the sweeps share), and the sample-ratio-mismatch
  chi-square test.

Pure NumPy/SciPy: no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from scipy import optimize, special
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

    @property
    def unadjusted_mean(self) -> float:
        return self.mean

    def __add__(self, other: Moments) -> Moments:
        """Both arms as one sample (what CUPED pools its θ over)."""
        return Moments(
            self.n + other.n,
            self.total + other.total,
            self.total_squares + other.total_squares,
            self.proportion,
        )


def _covariance(n: int, products: float, x: Moments, y: Moments) -> float:
    return (products - x.total * y.total / n) / (n - 1) if n > 1 else 0.0


@dataclass(frozen=True, slots=True)
class Ratio:
    """A ratio metric of one arm: Σ numerator / Σ denominator over its units, with the
    per-unit sum of products numerator × denominator the delta method needs."""

    numerator: Moments
    denominator: Moments
    products: float

    @property
    def n(self) -> int:
        return self.numerator.n

    @property
    def mean(self) -> float:
        return self.numerator.total / self.denominator.total if self.denominator.total else 0.0

    @property
    def unadjusted_mean(self) -> float:
        return self.mean

    @property
    def variance(self) -> float:
        m, d = self.numerator, self.denominator
        if d.mean == 0 or self.n <= 1:
            return 0.0
        covariance = _covariance(self.n, self.products, m, d)
        return (
            m.variance / d.mean**2
            - 2 * covariance * m.mean / d.mean**3
            + m.mean**2 * d.variance / d.mean**4
        )


@dataclass(frozen=True, slots=True)
class Adjusted:
    """A mean metric of one arm adjusted by a pre-exposure covariate (CUPED): the mean of
    post − θ·pre, whose variance is smaller by as much as the covariate explains."""

    post: Moments
    pre: Moments
    products: float
    """Σ post × pre over the arm's units."""
    theta: float = 0.0

    @property
    def n(self) -> int:
        return self.post.n

    @property
    def mean(self) -> float:
        return self.post.mean - self.theta * self.pre.mean

    @property
    def unadjusted_mean(self) -> float:
        return self.post.mean

    @property
    def variance(self) -> float:
        if self.n <= 1:
            return 0.0
        covariance = _covariance(self.n, self.products, self.post, self.pre)
        return self.post.variance + self.theta**2 * self.pre.variance - 2 * self.theta * covariance


Statistic = Moments | Ratio | Adjusted


def cuped(control: Adjusted, treatment: Adjusted) -> tuple[Adjusted, Adjusted]:
    """Both arms adjusted with one θ = cov(post, pre) / var(pre) over the pooled units, as
    gbstats pools it (θ = 0 when either pooled variance is zero)."""
    post, pre = control.post + treatment.post, control.pre + treatment.pre
    theta = 0.0
    if pre.variance != 0 and post.variance != 0:
        products = control.products + treatment.products
        theta = _covariance(post.n, products, post, pre) / pre.variance
    return replace(control, theta=theta), replace(treatment, theta=theta)


def variance_removed(adjusted: Adjusted) -> float:
    """The share of the metric's variance the covariate removed (0 when there was none)."""
    before = adjusted.post.variance
    return 1 - adjusted.variance / before if before > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Effect:
    estimate: float
    variance: float
    dof: float


def effect(control: Statistic, treatment: Statistic, *, relative: bool = True) -> Effect | None:
    """The lift and its delta-method variance; None when it is not defined (an empty arm, a
    control mean of zero for a relative lift, or an arm without variance). A CUPED lift is
    relative to control's unadjusted mean, as gbstats has it."""
    a, b = control, treatment
    if a.n < 2 or b.n < 2 or a.variance <= 0 or b.variance <= 0:
        return None
    if relative and (a.mean == 0 or a.unadjusted_mean == 0):
        return None
    base, other = a.unadjusted_mean, b.unadjusted_mean
    if relative:
        estimate = (b.mean - a.mean) / base
        variance = b.variance / (base**2 * b.n) + a.variance * other**2 / (base**4 * a.n)
    else:
        estimate = b.mean - a.mean
        variance = b.variance / b.n + a.variance / a.n
    va, vb = a.variance / a.n, b.variance / b.n
    dof = (va + vb) ** 2 / (va**2 / (a.n - 1) + vb**2 / (b.n - 1))
    return Effect(estimate, variance, dof)


def frequentist(found: Effect, alpha: float = ALPHA) -> dict[str, Any]:
    """Two-sided Welch t-test: p-value and the (1 − alpha) confidence interval."""
    se = math.sqrt(found.variance)
    p_value = 2 * (1 - special.stdtr(found.dof, abs(found.estimate) / se))
    width = float(special.stdtrit(found.dof, 1 - alpha / 2)) * se
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


PROPER_PRIOR = (0.0, 0.3)
"""GrowthBook's proper prior on the relative lift: mean 0, standard deviation 0.3."""


def bayesian(
    found: Effect,
    alpha: float = ALPHA,
    prior: tuple[float, float] | None = None,
    *,
    inverse: bool = False,
) -> dict[str, Any]:
    """Chance to beat control, credible interval, and the expected loss of choosing control
    (``risk_control``) or the treatment (``risk_treatment``). With a ``prior`` (mean, sd) on
    the lift the posterior is its normal update, which shrinks small, noisy early lifts
    toward the prior's mean; without one the prior is flat. For a metric where lower is
    better (``inverse``, as gbstats names it) beating control is a fall: the chance is that of
    a negative lift, and the two risks trade places."""
    mu, sigma = found.estimate, math.sqrt(found.variance)
    if prior is not None:
        prior_mean, prior_variance = prior[0], prior[1] ** 2
        precision = 1 / found.variance + 1 / prior_variance
        mu = (found.estimate / found.variance + prior_mean / prior_variance) / precision
        sigma = math.sqrt(1 / precision)
    p_control_better = float(special.ndtr(-mu / sigma))
    mean_positive, mean_negative = _truncated_means(mu, sigma)
    low, high = (float(special.ndtri(q)) * sigma + mu for q in (alpha / 2, 1 - alpha / 2))
    risks = [(1 - p_control_better) * mean_positive, -p_control_better * mean_negative]
    if inverse:
        risks.reverse()
    rise = float(special.ndtr(mu / sigma))
    return {
        "expected_lift": mu,
        "chance_to_beat_control": 1 - rise if inverse else rise,
        "ci": [float(low), float(high)],
        "risk_control": risks[0],
        "risk_treatment": risks[1],
        "prior": "proper" if prior is not None else "flat",
    }


def _truncated_means(mu: float, sigma: float) -> tuple[float, float]:
    """The means of Normal(mu, sigma²) above and below zero, in closed form: mu ± sigma times
    the inverse Mills ratio, written with the scaled complementary error function so that a
    far tail neither underflows nor divides zero by zero. Plain SciPy special functions, not
    ``scipy.stats`` distributions, whose per-call set-up cost more than the results' queries."""
    z = mu / sigma
    mills = math.sqrt(2 / math.pi)
    above = mu + sigma * mills / float(special.erfcx(-z / math.sqrt(2)))
    below = mu - sigma * mills / float(special.erfcx(z / math.sqrt(2)))
    return above, below


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
    return float(special.chdtrc(len(observed) - 1, statistic))


def compare(
    control: Statistic,
    treatment: Statistic,
    alpha: float = ALPHA,
    *,
    proper_prior: bool = False,
    inverse: bool = False,
) -> dict[str, Any]:
    """Everything the results show for one metric of one treatment arm; ``inverse`` for a
    metric where lower is better (the Bayesian block's chance to beat control is then that of
    a fall)."""
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
        "bayesian": bayesian(
            relative, alpha, PROPER_PRIOR if proper_prior else None, inverse=inverse
        ),
    }


# --- power ------------------------------------------------------------------------------------

POWER = 0.8


def power(
    mean: float, variance: float, n_per_arm: float, lift: float, alpha: float = ALPHA
) -> float:
    """The chance a two-sided test at ``alpha`` detects a relative ``lift`` with
    ``n_per_arm`` units in each of two arms, for a metric of this control mean and per-unit
    variance (the treatment's assumed equal): the normal approximation on the delta-method
    variance of the relative lift the results use."""
    if n_per_arm <= 0 or mean == 0 or variance <= 0:
        return 0.0
    # The relative lift's standard error, sd/|mean| · √((1 + (1 + lift)²) / n), written so
    # that no power of a huge or tiny mean overflows or underflows.
    se = math.sqrt(variance) / abs(mean) * math.sqrt((1 + (1 + lift) ** 2) / n_per_arm)
    z = sp.norm.ppf(1 - alpha / 2)
    if se == 0:  # so many units, or so little noise, that any lift shows
        return alpha if lift == 0 else 1.0
    shift = abs(lift) / se
    return float(sp.norm.sf(z - shift) + sp.norm.cdf(-z - shift))


def minimum_detectable_effect(
    mean: float, variance: float, n_per_arm: float, alpha: float = ALPHA, target: float = POWER
) -> float | None:
    """The smallest relative lift (up) detected with power ``target``; None when none up to
    a tenfold lift is (too few units, or a metric without variance)."""
    if power(mean, variance, n_per_arm, 10.0, alpha) < target:
        return None
    return float(
        optimize.brentq(lambda lift: power(mean, variance, n_per_arm, lift, alpha) - target, 0, 10)
    )


def units_needed(
    mean: float, variance: float, lift: float, alpha: float = ALPHA, target: float = POWER
) -> int | None:
    """Units per arm for power ``target`` against a relative ``lift``; None when the lift is
    zero or the metric has no variance or a zero mean."""
    if lift == 0 or mean == 0 or variance <= 0:
        return None
    if power(mean, variance, 1, lift, alpha) >= target:
        return 1
    high = 2.0
    while power(mean, variance, high, lift, alpha) < target:
        high *= 2
    needed = optimize.brentq(lambda n: power(mean, variance, n, lift, alpha) - target, 1, high)
    return math.ceil(needed)
