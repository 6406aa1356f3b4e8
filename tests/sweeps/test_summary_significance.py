"""The leaderboard's uncertainty: intervals over rows, each config paired with the leader and
Holm-adjusted, flaky rows and pass^k with repeats."""

from __future__ import annotations

import random
import statistics
import uuid

import pytest
from scipy import stats as sp

from promptlooper.multiplicity import holm
from promptlooper.sweeps.summary import RowScores, RunningStats, RunRow, summarise


def _summary(configs: dict[str, list[list[float]]]):
    """``configs[name][row]`` lists one row's scores, one per repeat."""
    runs, scores = [], {}
    for name, rows in configs.items():
        for row, values in enumerate(rows):
            for repeat, value in enumerate(values):
                run = RunRow(
                    uuid.uuid4(),
                    name,
                    {"name": name},
                    "completed",
                    1.0,
                    1,
                    1,
                    0.0,
                    False,
                    row_index=row,
                    repeat=repeat,
                )
                runs.append(run)
                scores[run.id] = {"accuracy": value}
    return summarise(runs, scores, {"accuracy": 1.0})


def _by_hash(summary):
    return {c.config_hash: c for c in summary.configs}


def test_pass_fail_scores_get_wilson_intervals_and_mcnemar_against_the_leader():
    best = [1.0] * 45 + [0.0] * 5
    worse = [1.0] * 25 + [0.0] * 25  # fails 20 rows the leader passes
    close = [1.0] * 44 + [0.0] * 6
    summary = _summary(
        {
            n: [[v] for v in values]
            for n, values in {"best": best, "worse": worse, "close": close}.items()
        }
    )

    found = _by_hash(summary)

    assert [c.config_hash for c in summary.ranked] == ["best", "close", "worse"]
    assert found["best"].versus_leader is None
    wilson = sp.binomtest(45, 50).proportion_ci(0.95, method="wilson")
    interval = found["best"].interval
    assert interval is not None
    assert interval.method == "wilson"
    assert (interval.low, interval.high) == pytest.approx((wilson.low, wilson.high))
    worse_vs = found["worse"].versus_leader
    close_vs = found["close"].versus_leader
    assert worse_vs is not None
    assert close_vs is not None
    raw = [sp.binomtest(1, 1).pvalue, sp.binomtest(0, 20).pvalue]
    assert (close_vs.paired.p_value, worse_vs.paired.p_value) == pytest.approx(raw)
    assert (close_vs.p_adjusted, worse_vs.p_adjusted) == pytest.approx(holm(raw))
    assert worse_vs.paired.test == "mcnemar"
    assert worse_vs.paired.diff == pytest.approx(-0.4)
    assert not worse_vs.tied
    assert close_vs.tied
    assert summary.runner_up is close_vs


def test_graded_scores_pair_with_the_leader_row_by_row():
    rows = [0.1 * i for i in range(10)]
    leader = [min(1.0, x + 0.3) for x in rows]
    follower = [x + (0.02 if i % 2 else -0.01) for i, x in enumerate(rows)]
    summary = _summary({"lead": [[v] for v in leader], "follow": [[v] for v in follower]})

    versus = _by_hash(summary)["follow"].versus_leader

    expected = sp.ttest_rel(follower, leader)
    assert versus is not None
    assert versus.paired.test == "paired-t"
    assert versus.paired.p_value == pytest.approx(expected.pvalue)
    assert versus.p_adjusted == pytest.approx(expected.pvalue)  # one comparison: unchanged
    assert versus.leader == "lead"
    assert versus.as_dict()["rows"] == 10


def test_a_config_is_compared_only_on_the_rows_both_answered():
    summary = _summary({"a": [[1.0], [1.0], [0.0], [1.0]], "b": [[0.0], [1.0]]})

    versus = _by_hash(summary)["b"].versus_leader

    assert versus is not None
    assert versus.paired.n == 2
    assert (versus.paired.wins, versus.paired.losses) == (0, 1)


def test_a_tie_says_how_many_rows_would_separate_or_that_none_would():
    summary = _summary({"a": [[0.6], [0.4], [0.7], [0.3]], "b": [[0.5], [0.5], [0.5], [0.4]]})
    tied = _by_hash(summary)["b"].versus_leader
    assert tied is not None
    assert tied.tied
    assert tied.rows_needed is not None
    assert tied.rows_needed > 4

    same = _summary({"a": [[0.2], [0.9]], "b": [[0.9], [0.2]]})
    versus = _by_hash(same)["b"].versus_leader
    assert versus is not None
    assert versus.tied
    assert versus.rows_needed is None


def test_repeats_give_flaky_rows_and_pass_k_and_intervals_over_rows():
    summary = _summary({"a": [[1.0, 1.0, 1.0], [1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]})

    (config,) = summary.configs

    assert config.repeats == 3
    assert config.flaky_rows == [1]
    assert config.pass_k == pytest.approx(0.5)
    assert config.interval is not None
    assert config.interval.n == 4  # rows, not runs
    assert config.interval.method == "t"  # row means of 2/3 are not pass/fail
    assert config.scorer_intervals["accuracy"].n == 4


def test_without_repeats_no_flakiness_is_claimed():
    summary = _summary({"a": [[1.0], [0.0]]})
    (config,) = summary.configs
    assert (config.repeats, config.flaky_rows, config.pass_k) == (1, [], None)


def test_one_row_gives_a_point_and_no_comparison():
    summary = _summary({"a": [[1.0]], "b": [[0.0]]})
    assert summary.runner_up is None
    assert all(c.versus_leader is None for c in summary.configs)


def test_running_stats_give_what_the_statistics_module_gives_over_every_value():
    """A scorer's spread and the runs' timing are running totals, not every value kept: they
    agree with ``statistics`` over the same values, a constant included (no negative spread
    from rounding)."""
    draw = random.Random(3)
    for values in ([draw.uniform(0, 1) for _ in range(2001)], [0.1] * 7, [0.25]):
        running = RunningStats()
        for value in values:
            running.add(value)
        found = running.as_scorer_stats()
        assert found.n == len(values)
        assert found.mean == pytest.approx(statistics.fmean(values), rel=1e-12)
        assert found.stdev == pytest.approx(statistics.pstdev(values), rel=1e-9, abs=1e-12)
        assert (found.minimum, found.maximum) == (min(values), max(values))


def test_row_scores_read_by_row_whether_a_config_answered_every_row_or_some() -> None:
    every = RowScores([2, 0, 1], [0.3, 0.1, 0.2])
    some = RowScores([3, 1], [0.4, 0.2])

    assert dict(every) == {0: 0.1, 1: 0.2, 2: 0.3}
    assert dict(some) == {1: 0.2, 3: 0.4}
    assert [list(found) for found in every.aligned(some)] == [[0.2], [0.2]]
    assert [list(found) for found in every.aligned(every)] == [[0.1, 0.2, 0.3]] * 2
    assert list(some.scores()) == [0.2, 0.4]
    with pytest.raises(KeyError):
        some[0]
    with pytest.raises(KeyError):
        every[3]


def test_pass_fail_row_scores_read_back_as_the_same_floats() -> None:
    passed = RowScores([1, 0, 2], [1.0, 0.0, 1.0])
    graded = RowScores([0, 1, 2], [1.0, 0.5, 0.0])

    assert passed.scores().typecode == "d"
    assert list(passed.scores()) == [0.0, 1.0, 1.0]
    assert all(isinstance(value, float) for value in passed.values())
    assert [list(found) for found in passed.aligned(graded)] == [[0.0, 1.0, 1.0], [1.0, 0.5, 0.0]]
    assert passed._values.itemsize == 1  # kept a byte each, as graded scores are not
    assert graded._values.itemsize == 8
