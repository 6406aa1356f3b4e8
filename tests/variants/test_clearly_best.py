"""A comparison names a winner only when its interval clears every other's."""

from __future__ import annotations

from promptlooper.variants.compare import clearly_best


def test_a_winner_needs_an_interval_wholly_above_every_other():
    assert clearly_best({"a": (0.8, 0.9), "b": (0.5, 0.7)}) == "a"
    assert clearly_best({"a": (0.8, 0.9), "b": (0.5, 0.7), "c": (0.85, 0.95)}) is None
    assert clearly_best({"a": (0.6, 0.9), "b": (0.5, 0.7)}) is None


def test_no_winner_without_two_intervals():
    assert clearly_best({"a": (0.8, 0.9)}) is None
    assert clearly_best({}) is None
    assert clearly_best({"a": (0.8, 0.9), "b": (None, None)}) is None
