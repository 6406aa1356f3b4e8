"""The experiment page's first sentence: a lead is called clear only when the paired,
adjusted comparison with #2 says so."""

from __future__ import annotations

import uuid

from promptlooper.sweeps.summary import RunRow, summarise
from promptlooper.sweeps.verdict import answer


def _summary(first: list[float], second: list[float]):
    runs, scores = [], {}
    for digest, values in (("a" * 64, first), ("b" * 64, second)):
        for row, value in enumerate(values):
            run = RunRow(
                uuid.uuid4(), digest, {}, "completed", 10.0, 1, 1, 0.0, False, row_index=row
            )
            runs.append(run)
            scores[run.id] = {"accuracy": value}
    return summarise(runs, scores, {"accuracy": 1.0})


def test_a_significant_paired_lead_is_clear() -> None:
    summary = _summary([0.9, 0.92, 0.91, 0.9], [0.5, 0.52, 0.51, 0.49])
    text = answer(summary)
    assert text is not None
    assert text.startswith("Config #1 (aaaaaaaa) leads with 0.907 [0.892, 0.923] over 4 runs")
    assert (
        "clearly ahead of #2 at 0.505 [0.484, 0.526] (-0.403 [-0.410, -0.395] over 4 rows" in text
    )
    assert "p < 0.001 adjusted" in text


def test_a_difference_that_could_be_noise_is_a_tie() -> None:
    text = answer(_summary([1.0, 0.0, 1.0], [0.0, 1.0, 0.5]))
    assert text is not None
    assert "tied with #2" in text
    assert "could be noise" in text
    assert "rows would separate them" in text


def test_one_row_cannot_say_how_surely() -> None:
    text = answer(_summary([1.0], [0.0]))
    assert text == (
        "Config #1 (aaaaaaaa) leads with 1.000 over 1 run; "
        "#2 follows at 0.000 (too few rows to say how surely)."
    )


def test_no_scored_runs_no_answer() -> None:
    assert answer(summarise([], {}, {})) is None
