"""Statistics: known answers from GrowthBook's stats engine, and agreement with it on random
data."""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path

import pytest

from promptlooper.online import stats

SPEC = json.loads((Path(__file__).parents[1] / "spec" / "stats.json").read_text())
TOLERANCE = 1e-9


def _moments(metric: str, values: list) -> stats.Moments:
    if metric == "proportion":
        return stats.Moments.binary(*values)
    return stats.Moments(*values)


@pytest.mark.parametrize("case", SPEC["compare"], ids=lambda c: f"{c['metric']}-{c['control']}")
@pytest.mark.parametrize("difference", ["relative", "absolute"])
def test_known_answers(case, difference):
    control = _moments(case["metric"], case["control"])
    treatment = _moments(case["metric"], case["treatment"])
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
