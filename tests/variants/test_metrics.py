"""Interval math against known answers."""

from __future__ import annotations

import pytest

from promptlooper.variants.metrics import (
    Sample,
    mean_interval,
    percentile,
    summarise,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("successes", "n", "low", "high"),
    [
        (8, 10, 0.4902, 0.9433),  # Wilson (1927); also R's prop.test(correct = FALSE)
        (0, 10, 0.0, 0.2775),
        (10, 10, 0.7225, 1.0),
        (50, 100, 0.4038, 0.5962),
    ],
)
def test_wilson_interval_known_answers(successes, n, low, high):
    got_low, got_high = wilson_interval(successes, n)
    assert got_low == pytest.approx(low, abs=1e-4)
    assert got_high == pytest.approx(high, abs=1e-4)


def test_wilson_with_no_data_is_uninformative():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_student_t_interval_known_answer():
    # mean 0.8125, s = 0.0854, t(0.975, 3) = 3.1824 -> half width 0.1359
    mean, low, high = mean_interval([0.8, 0.9, 0.7, 0.85])
    assert mean == pytest.approx(0.8125)
    assert low == pytest.approx(0.6766, abs=1e-4)
    assert high == pytest.approx(0.9484, abs=1e-4)
    assert mean_interval([0.5]) == (0.5, None, None)
    assert mean_interval([]) == (None, None, None)


def test_percentiles_and_summary():
    samples = [Sample(float(ms), 10, 5, 0.001, ms != 40, 0.5) for ms in (10, 20, 30, 40)]
    summary = summarise(samples)
    assert percentile([10, 20, 30, 40], 50) == 25
    assert summary.n == 4
    assert summary.success_rate == 0.75
    assert summary.latency_p95_ms == pytest.approx(38.5)
    assert summary.mean_cost == pytest.approx(0.001)
    assert summary.quality_ci == (pytest.approx(0.5), pytest.approx(0.5))
