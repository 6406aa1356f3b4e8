"""Statistics: known answers from GrowthBook's stats engine, and agreement with it on random
data."""

from __future__ import annotations

import json
import math
import random
import warnings
from pathlib import Path

import pytest

from promptlooper.online import stats

SPEC = json.loads((Path(__file__).parents[1] / "spec" / "stats.json").read_text())
TOLERANCE = 1e-9


def _statistic(metric: str, values: list) -> stats.Statistic:
    """A spec case's arm: (n, successes), (n, Σx, Σx²), or for a ratio and a CUPED metric
    (n, Σ numerator or post, its Σ², Σ denominator or pre, its Σ², Σ of their products)."""
    if metric == "proportion":
        return stats.Moments.binary(*values)
    if metric == "mean":
        return stats.Moments(*values)
    n, total, squares, other, other_squares, products = values
    first, second = stats.Moments(n, total, squares), stats.Moments(n, other, other_squares)
    if metric == "ratio":
        return stats.Ratio(first, second, products)
    return stats.Adjusted(first, second, products)


def _arms(case: dict) -> tuple[stats.Statistic, stats.Statistic]:
    control = _statistic(case["metric"], case["control"])
    treatment = _statistic(case["metric"], case["treatment"])
    if case["metric"] == "cuped":
        control, treatment = stats.cuped(control, treatment)  # type: ignore[arg-type]
        assert control.theta == pytest.approx(case["theta"], abs=TOLERANCE)  # type: ignore[union-attr]
    return control, treatment


@pytest.mark.parametrize("case", SPEC["compare"], ids=lambda c: f"{c['metric']}-{c['control']}")
@pytest.mark.parametrize("difference", ["relative", "absolute"])
def test_known_answers(case, difference):
    control, treatment = _arms(case)
    expected = case["expected"][difference]

    found = stats.effect(control, treatment, relative=difference == "relative")
    assert found is not None
    frequentist = stats.frequentist(found)
    sequential = stats.sequential(found, control.n + treatment.n)
    bayesian = stats.bayesian(found)

    assert found.estimate == pytest.approx(expected["estimate"], abs=TOLERANCE)
    assert frequentist["p_value"] == pytest.approx(expected["p_value"], abs=TOLERANCE)
    assert frequentist["ci"] == pytest.approx(expected["ci"], abs=TOLERANCE)
    assert sequential["p_value"] == pytest.approx(expected["sequential_p_value"], abs=TOLERANCE)
    assert sequential["ci"] == pytest.approx(expected["sequential_ci"], abs=TOLERANCE)
    assert bayesian["chance_to_beat_control"] == pytest.approx(
        expected["chance_to_beat_control"], abs=TOLERANCE
    )
    assert bayesian["ci"] == pytest.approx(expected["credible_interval"], abs=TOLERANCE)
    risk = [bayesian["risk_control"], bayesian["risk_treatment"]]
    assert risk == pytest.approx(expected["risk"], abs=TOLERANCE)


@pytest.mark.parametrize("case", SPEC["proper_prior"], ids=lambda c: f"{c['control']}")
def test_proper_prior_known_answers(case):
    control, treatment = _arms(case)
    found = stats.effect(control, treatment)
    assert found is not None

    bayesian = stats.bayesian(found, prior=tuple(case["prior"]))
    flat = stats.bayesian(found)

    expected = case["expected"]
    assert bayesian["expected_lift"] == pytest.approx(expected["expected"], abs=TOLERANCE)
    assert bayesian["chance_to_beat_control"] == pytest.approx(
        expected["chance_to_beat_control"], abs=TOLERANCE
    )
    assert bayesian["ci"] == pytest.approx(expected["credible_interval"], abs=TOLERANCE)
    assert [bayesian["risk_control"], bayesian["risk_treatment"]] == pytest.approx(
        expected["risk"], abs=TOLERANCE
    )
    assert abs(bayesian["expected_lift"]) < abs(flat["expected_lift"])  # shrunk toward 0


@pytest.mark.parametrize("mu", [-0.4, -0.02, -1e-6, 0.0, 3e-4, 0.05, 0.4])
@pytest.mark.parametrize("sigma", [1e-4, 0.01, 0.3])
def test_risks_agree_with_scipys_truncated_normal(mu, sigma):
    """The expected losses use the means of the lift's posterior above and below zero in
    closed form; the losses equal those from scipy.stats.truncnorm, whose computation warns
    in the far tails (|mu| up to 4,000 standard deviations)."""
    from scipy.stats import norm, truncnorm

    found = stats.bayesian(stats.Effect(mu, sigma**2, 1000.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        above = float(truncnorm.mean(-mu / sigma, float("inf"), loc=mu, scale=sigma))
        below = float(truncnorm.mean(-float("inf"), -mu / sigma, loc=mu, scale=sigma))
    p_below = float(norm.cdf(0.0, loc=mu, scale=sigma))
    risks = [found["risk_control"], found["risk_treatment"]]
    assert all(math.isfinite(r) and r >= 0 for r in risks)
    assert risks == pytest.approx([(1 - p_below) * above, -p_below * below], rel=1e-9, abs=1e-12)


def test_cuped_removes_the_variance_the_covariate_explains():
    case = next(c for c in SPEC["compare"] if c["metric"] == "cuped")
    control, treatment = _arms(case)
    unadjusted = stats.effect(control.post, treatment.post)  # type: ignore[union-attr]
    adjusted = stats.effect(control, treatment)
    assert unadjusted is not None
    assert adjusted is not None

    assert 0 < stats.variance_removed(control) < 1  # type: ignore[arg-type]
    assert adjusted.variance < unadjusted.variance
    assert stats.compare(control, treatment)["control_mean"] == control.mean


def test_ratio_and_cuped_agree_with_gbstats_on_random_data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.frequentist.tests import TwoSidedTTest
        from gbstats.models.statistics import (
            RatioStatistic,
            RegressionAdjustedStatistic,
            SampleMeanStatistic,
            compute_theta,
        )

    rng = random.Random(5)
    for _ in range(100):
        arms = []
        for _arm in range(2):
            n = rng.randint(50, 5000)
            xs = [rng.expovariate(0.5) for _ in range(n)]
            ys = [x * rng.uniform(0.2, 2) + rng.random() for x in xs]
            arms.append(
                (n, sum(xs), sum(x * x for x in xs), sum(ys), sum(y * y for y in ys),
                 sum(x * y for x, y in zip(xs, ys, strict=True)))
            )  # fmt: skip

        def theirs(values, kind):
            n, total, squares, other, other_squares, products = values
            first = SampleMeanStatistic(n=n, sum=total, sum_squares=squares)
            second = SampleMeanStatistic(n=n, sum=other, sum_squares=other_squares)
            if kind == "ratio":
                return RatioStatistic(
                    n=n, m_statistic=first, d_statistic=second, m_d_sum_of_products=products
                )
            return RegressionAdjustedStatistic(
                n=n,
                post_statistic=first,
                pre_statistic=second,
                post_pre_sum_of_products=products,
                theta=0,
            )

        for kind in ("ratio", "cuped"):
            a, b = theirs(arms[0], kind), theirs(arms[1], kind)
            if kind == "cuped":
                theta = compute_theta(a, b)
                a.theta = b.theta = theta
            expected = TwoSidedTTest(a, b).compute_result()
            control, treatment = _arms(
                {"metric": kind, "control": arms[0], "treatment": arms[1], "theta": a.theta}
                if kind == "cuped"
                else {"metric": kind, "control": arms[0], "treatment": arms[1]}
            )
            found = stats.effect(control, treatment)
            assert found is not None
            assert found.estimate == pytest.approx(expected.expected, abs=1e-12)
            assert stats.frequentist(found)["p_value"] == pytest.approx(expected.p_value, abs=1e-12)


def test_power_minimum_detectable_effect_and_units_needed_agree():
    mean, variance = 0.1, 0.09  # a 10 % conversion rate
    needed = stats.units_needed(mean, variance, 0.05)
    assert needed is not None
    assert stats.power(mean, variance, needed, 0.05) >= stats.POWER
    assert stats.power(mean, variance, needed - 1, 0.05) < stats.POWER
    mde = stats.minimum_detectable_effect(mean, variance, needed)
    assert mde == pytest.approx(0.05, rel=1e-3)
    assert stats.power(mean, variance, 1000, 0.0) == pytest.approx(0.05)  # alpha: no effect
    assert stats.minimum_detectable_effect(mean, variance, 2) is None
    assert stats.units_needed(mean, 0.0, 0.05) is None


@pytest.mark.parametrize("case", SPEC["srm"], ids=str)
def test_srm_known_answers(case):
    assert stats.srm_p_value(case["observed"], case["weights"]) == pytest.approx(
        case["p_value"], abs=TOLERANCE
    )


def test_agreement_with_gbstats_on_random_data():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.bayesian.tests import EffectBayesianABTest
        from gbstats.frequentist.tests import SequentialTwoSidedTTest, TwoSidedTTest
        from gbstats.models.statistics import ProportionStatistic

    rng = random.Random(11)
    warnings.simplefilter("ignore", RuntimeWarning)  # gbstats overflows where we do not
    for _ in range(200):
        na, nb = rng.randint(30, 20_000), rng.randint(30, 20_000)
        xa, xb = rng.randint(1, na - 1), rng.randint(1, nb - 1)
        a, b = ProportionStatistic(n=na, sum=xa), ProportionStatistic(n=nb, sum=xb)
        found = stats.effect(stats.Moments.binary(na, xa), stats.Moments.binary(nb, xb))
        assert found is not None

        theirs = TwoSidedTTest(a, b).compute_result()
        assert stats.frequentist(found)["p_value"] == pytest.approx(theirs.p_value, abs=1e-12)
        sequential = SequentialTwoSidedTTest(a, b).compute_result()
        ours = stats.sequential(found, na + nb)
        assert ours["p_value"] == pytest.approx(sequential.p_value, abs=1e-12)
        bayes = EffectBayesianABTest(a, b).compute_result()
        assert stats.bayesian(found)["chance_to_beat_control"] == pytest.approx(
            bayes.chance_to_win, abs=1e-12
        )


def test_lower_is_better_agrees_with_gbstats_inverse_metrics():
    """A metric where lower is better beats control by falling: gbstats' ``inverse``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gbstats.bayesian.tests import EffectBayesianABTest, EffectBayesianConfig
        from gbstats.models.statistics import SampleMeanStatistic

    rng = random.Random(5)
    for _ in range(50):
        arms = []
        for _arm in range(2):
            n = rng.randint(30, 5_000)
            values = [rng.expovariate(1 / rng.uniform(0.5, 2)) for _ in range(n)]
            arms.append((n, sum(values), sum(v * v for v in values)))
        theirs = EffectBayesianABTest(
            *(SampleMeanStatistic(n=n, sum=x, sum_squares=xx) for n, x, xx in arms),
            EffectBayesianConfig(inverse=True),
        ).compute_result()
        found = stats.effect(*(stats.Moments(*arm) for arm in arms))
        assert found is not None

        ours = stats.bayesian(found, inverse=True)

        assert ours["chance_to_beat_control"] == pytest.approx(theirs.chance_to_win, abs=1e-12)
        assert [ours["risk_control"], ours["risk_treatment"]] == pytest.approx(
            theirs.risk, abs=1e-12
        )


def test_a_rise_of_a_lower_is_better_metric_has_no_chance_to_beat_control():
    control, treatment = stats.Moments(1000, 1000.0, 2000.0), stats.Moments(1000, 1800.0, 5000.0)

    rise = stats.compare(control, treatment)["bayesian"]
    worse = stats.compare(control, treatment, inverse=True)["bayesian"]

    assert rise["chance_to_beat_control"] > 0.999
    assert worse["chance_to_beat_control"] < 0.001
    assert worse["risk_treatment"] == rise["risk_control"] > 0


def test_undefined_effects_say_so_instead_of_dividing_by_zero():
    nothing = stats.Moments.binary(100, 0)
    some = stats.Moments.binary(100, 10)

    assert stats.effect(nothing, some) is None  # control mean 0, and no variance
    assert stats.effect(stats.Moments.binary(1, 1), some) is None
    assert "not enough data" in stats.compare(nothing, some)["error"]


def test_a_huge_effect_gives_a_tiny_sequential_p_value_not_an_overflow():
    control, treatment = stats.Moments.binary(100_000, 1_000), stats.Moments.binary(100_000, 50_000)
    found = stats.effect(control, treatment, relative=False)  # z ≈ 300: exp(z²/2) overflows
    assert found is not None
    assert stats.sequential(found, 200_000)["p_value"] == 0.0


def test_multiple_comparison_adjustments():
    p_values = [0.01, 0.04, 0.03, 0.005]

    assert stats.holm(p_values) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.benjamini_hochberg(p_values) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])
