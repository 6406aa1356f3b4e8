"""How the results' numbers read on the page and in the CLI: a chance never rounded to a
certainty, a small mean to significant digits, and the family of adjusted p-values."""

from __future__ import annotations

import pytest

from promptlooper.online import display


@pytest.mark.parametrize(
    ("probability", "shown"),
    [
        (1.0, "> 99.9 %"),  # a normal posterior's tail past a float's digits, not certainty
        (0.0, "< 0.1 %"),
        (0.9997, "> 99.9 %"),
        (0.99949, "> 99.9 %"),
        (0.999, "99.9 %"),
        (0.997, "99.7 %"),
        (0.5, "50.0 %"),
        (0.0004, "< 0.1 %"),
        (0.001, "0.1 %"),
    ],
)
def test_a_chance_is_never_rounded_to_a_certainty(probability: float, shown: str):
    assert display.chance(probability) == shown


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0.000412, "0.000412"),
        (-0.00321, "-0.00321"),
        (0.0012345, "0.00123"),
        (1.5, "1.50"),
        (10.0, "10.0"),
        (1234.5, "1,234"),
        (0.0, "0"),
        (None, "–"),
        (float("nan"), "–"),
        (2.5e12, "2.50e+12"),
    ],
)
def test_a_mean_keeps_three_significant_digits(value: float | None, shown: str):
    assert display.mean(value) == shown


def test_the_family_says_how_many_tests_and_what_was_left_out():
    assert display.family({"tests": 3, "comparisons": 3}) == "p-values adjusted across 3 tests"
    assert display.family({"tests": 1, "comparisons": 3}) == (
        "1 test, so its adjusted p-value is its own; 2 of 3 comparisons have no data to test yet"
    )
    assert display.family({"tests": 0, "comparisons": 2}).startswith("no p-values to adjust")
