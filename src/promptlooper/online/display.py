"""How the results' numbers read, alike on the results page and in the CLI: a chance to beat
control, a mean of any size, the family the p-values are adjusted in, and what a metric
measures. Plain Python, no SciPy: the page and the CLI format what ``results`` computed."""

from __future__ import annotations

import math
from typing import Any, Protocol

CORRECTIONS = {"holm": "Holm–Bonferroni", "bh": "Benjamini–Hochberg"}
SIGNIFICANT = 3
"""Significant digits of a mean: a cost of 0.00042 per call reads as 0.00042, not 0.00."""


def primary_is_defined(variants: list[dict[str, Any]]) -> bool:
    """Whether the experiment's primary metric is a defined one (it then leads the
    comparisons: a reader decides on it, not on the built-in conversion rate)."""
    return any(
        block.get("role") == "primary"
        for variant in variants[1:]
        for block in (variant.get("metrics") or {}).values()
    )


def chance(probability: float) -> str:
    """A probability in percent with one decimal, never rounded to a certainty: past 99.9 %
    it reads ``> 99.9 %``, under 0.1 % ``< 0.1 %``. A chance to beat control comes from a
    normal posterior, which is never certain: a 1.0 or 0.0 there is floating point running
    out of digits in the tail, not an exact answer."""
    if probability > 0.999:
        return "> 99.9 %"
    if probability < 0.001:
        return "< 0.1 %"
    return f"{probability * 100:.1f} %"


def mean(value: float | None, digits: int = SIGNIFICANT) -> str:
    """A mean to ``digits`` significant digits (thousands grouped, no exponent below a
    billion), or an en dash when there is none."""
    if value is None or not math.isfinite(value):
        return "–"
    if value == 0:
        return "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude >= 9:
        return f"{value:.{digits - 1}e}"
    decimals = max(0, digits - 1 - magnitude)
    return f"{value:,.{decimals}f}"


def family(multiplicity: dict[str, Any]) -> str:
    """What the adjusted p-values were adjusted for: the count of valid tests, and of the
    comparisons left out for want of data; one test is its own adjustment. The correction
    is named beside it (``CORRECTIONS``), where the page offers the other."""
    tests, comparisons = multiplicity.get("tests", 0), multiplicity.get("comparisons", 0)
    left = comparisons - tests
    without = f"; {left} of {comparisons} comparisons have no data to test yet" if left else ""
    if tests == 0:
        return f"no p-values to adjust yet{without}"
    if tests == 1:
        return f"1 test, so its adjusted p-value is its own{without}"
    return f"p-values adjusted across {tests} tests{without}"


class Metric(Protocol):
    kind: str
    source: str
    aggregation: str
    denominator: str | None
    denominator_kind: str | None
    direction: str
    cuped: bool
    cuped_window_days: int | None


def metric_summary(metric: Metric) -> str:
    """What a defined metric measures, in a few words, where it is picked by its name alone
    (the experiment form): two metrics on the same events read apart."""
    source = metric.source if metric.kind == "event" else f"{metric.source} (performance log)"
    if metric.aggregation == "ratio" and metric.denominator_kind is not None:
        what = f"{source} per {metric.denominator} ({metric.denominator_kind})"
    elif metric.aggregation == "ratio":  # its own denominator: a value per event or per call
        what = f"value per {source} event" if metric.kind == "event" else f"{source} per call"
    else:
        what = f"{metric.aggregation} of {source}"
    if metric.cuped:
        what += f", CUPED over {metric.cuped_window_days} days"
    return f"{what}, better {metric.direction}"
