"""The sweeps' statistics: known answers against SciPy called directly, and the edge cases of
small or early sweeps (no rows, one row, ties, identical scores)."""

from __future__ import annotations

import math
import random
import warnings

import pytest
from scipy import stats as sp

from promptlooper import multiplicity
from promptlooper.sweeps import significance as sig


@pytest.fixture(autouse=True)
def _no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_wilson_interval_matches_binomtest():
    values = [1.0] * 7 + [0.0] * 3

    found = sig.score_interval(values, binary=True)

    expected = sp.binomtest(7, 10).proportion_ci(0.95, method="wilson")
    assert found == sig.Interval(0.7, expected.low, expected.high, 10, "wilson")
    ninety = sig.score_interval(values, binary=True, confidence=0.9)
    assert ninety is not None
    assert ninety.high - ninety.low < found.high - found.low


def test_wilson_stays_inside_zero_and_one_at_the_extremes():
    for values in ([1.0] * 12, [0.0] * 12, [1.0]):
        found = sig.score_interval(values, binary=True)
        assert found is not None
        assert 0.0 <= found.low <= found.mean <= found.high <= 1.0
        assert found.high - found.low > 0  # all passes still leaves doubt


def test_t_interval_matches_the_t_distribution():
    values = [0.2, 0.9, 0.4, 0.55, 0.7, 0.35]

    found = sig.score_interval(values, binary=False)

    mean = sum(values) / 6
    low, high = sp.t.interval(0.95, 5, loc=mean, scale=sp.sem(values))
    assert found is not None
    assert found.method == "t"
    assert found.n == 6
    assert (found.mean, found.low, found.high) == pytest.approx((mean, low, high))


def test_intervals_of_nothing_one_value_and_identical_values():
    assert sig.score_interval([], binary=False) is None
    assert sig.score_interval([], binary=True) is None
    assert sig.score_interval([0.4], binary=False) == sig.Interval(0.4, 0.4, 0.4, 1, "t")
    assert sig.score_interval([0.5] * 5, binary=False) == sig.Interval(0.5, 0.5, 0.5, 5, "t")


def test_paired_t_matches_ttest_rel():
    rng = random.Random(3)
    a = [rng.random() for _ in range(40)]
    b = [min(1.0, x + rng.gauss(0.05, 0.1)) for x in a]

    found = sig.paired(a, b, binary=False)

    expected = sp.ttest_rel(b, a)
    interval = expected.confidence_interval(0.95)
    assert found is not None
    assert found.test == "paired-t"
    assert found.n == 40
    assert found.diff == pytest.approx(sum(y - x for x, y in zip(a, b, strict=True)) / 40)
    assert found.p_value == pytest.approx(expected.pvalue)
    assert (found.low, found.high) == pytest.approx((interval.low, interval.high))
    assert found.wins + found.losses <= 40


def test_mcnemar_is_the_exact_binomial_test_on_discordant_rows():
    # 12 rows where B passes and A fails, 3 the other way round, 25 that agree.
    a = [0.0] * 12 + [1.0] * 3 + [1.0] * 15 + [0.0] * 10
    b = [1.0] * 12 + [0.0] * 3 + [1.0] * 15 + [0.0] * 10

    found = sig.paired(a, b, binary=True)

    assert found is not None
    assert found.test == "mcnemar"
    assert (found.wins, found.losses, found.n) == (12, 3, 40)
    assert found.diff == pytest.approx(9 / 40)
    assert found.p_value == pytest.approx(sp.binomtest(12, 15, 0.5).pvalue)
    assert found.low < found.diff < found.high
    swapped = sig.paired(b, a, binary=True)
    assert swapped is not None
    assert swapped.p_value == pytest.approx(found.p_value)
    assert swapped.diff == pytest.approx(-found.diff)


def test_paired_edge_cases():
    assert sig.paired([], [], binary=False) is None
    assert sig.paired([0.3], [0.9], binary=False) is None
    with pytest.raises(ValueError, match="one of each per row"):
        sig.paired([0.1, 0.2], [0.1], binary=False)

    for binary, values in ((False, [0.2, 0.7, 0.7]), (True, [1.0, 0.0, 1.0])):
        same = sig.paired(values, values, binary=binary)
        assert same is not None
        assert (same.diff, same.low, same.high, same.p_value) == (0.0, 0.0, 0.0, 1.0)
        assert same.contains_zero()

    shifted = sig.paired([0.1, 0.2, 0.3], [0.3, 0.4, 0.5], binary=False)
    assert shifted is not None
    assert shifted.diff == pytest.approx(0.2)
    assert shifted.p_value == 0.0
    assert shifted.low == shifted.high == shifted.diff
    assert not shifted.contains_zero()


def test_paired_ties_count_as_neither_win_nor_loss():
    found = sig.paired([0.5, 0.5, 0.2, 0.9], [0.5, 0.6, 0.1, 0.9], binary=False)
    assert found is not None
    assert (found.wins, found.losses) == (1, 1)


def test_rows_to_separate_at_the_observed_effect():
    rng = random.Random(5)
    a = [rng.random() for _ in range(30)]
    b = [x + rng.gauss(0.03, 0.2) for x in a]

    needed = sig.rows_to_separate(a, b, binary=False)

    diffs = [y - x for x, y in zip(a, b, strict=True)]
    effect = abs(sum(diffs) / len(diffs)) / sp.tstd(diffs)
    assert needed is not None

    # At that size a paired t test has (about) the asked-for power, and one row fewer has less.
    def power(n):
        dof = n - 1
        shift = effect * math.sqrt(n)
        critical = sp.t.ppf(0.975, dof)
        return sp.nct.sf(critical, dof, shift) + sp.nct.cdf(-critical, dof, shift)

    assert power(needed) >= 0.79
    assert power(needed - 1) < 0.8 + 0.01
    more = sig.rows_to_separate(a, b, binary=False, power=0.9)
    assert more is not None
    assert more > needed


def test_rows_to_separate_pass_fail_uses_the_discordant_share():
    a = [0.0] * 6 + [1.0] * 2 + [1.0] * 12
    b = [1.0] * 6 + [0.0] * 2 + [1.0] * 12  # 40 % discordant, effect 0.2

    needed = sig.rows_to_separate(a, b, binary=True)

    z_a, z_b = sp.norm.ppf(0.975), sp.norm.ppf(0.8)
    expected = (z_a * math.sqrt(0.4) + z_b * math.sqrt(0.4 - 0.04)) ** 2 / 0.04
    assert needed == math.ceil(expected)


def test_rows_to_separate_cannot_when_there_is_no_effect():
    assert sig.rows_to_separate([0.2, 0.8], [0.8, 0.2], binary=False) is None
    assert sig.rows_to_separate([1.0, 0.0], [1.0, 0.0], binary=True) is None
    assert sig.rows_to_separate([], [], binary=True) is None


def test_is_binary():
    assert sig.is_binary([0, 1, 1.0, 0.0])
    assert not sig.is_binary([0, 0.5, 1])
    assert sig.is_binary([])


def test_holm_is_shared_with_the_online_results():
    from promptlooper.online import stats

    assert sig.holm is multiplicity.holm is stats.holm
    assert stats.benjamini_hochberg is multiplicity.benjamini_hochberg
    assert sig.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_rounding_noise_is_no_difference():
    a = [0.1 + 0.2, 0.7, 0.3]
    b = [0.3, 0.7, 0.1 + 0.2]  # 0.1 + 0.2 is 0.30000000000000004

    found = sig.paired(a, b, binary=False)

    assert found is not None
    assert (found.diff, found.p_value) == (0.0, 1.0)
    assert sig.rows_to_separate(a, b, binary=False) is None
