"""Adjusted p-values for a family of comparisons, shared by the A/B results and the sweeps.

A page that compares several variants (or several sweep configs against the leader) makes
several tests at once: unadjusted, some of them come out "significant" by chance alone.
Plain Python: no I/O, importable from any domain; the families are small (a page's variants,
a leaderboard's configs), where building arrays would cost more than the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence


def _ascending(p_values: Sequence[float]) -> list[int]:
    """Indexes of the p-values, smallest first (ties keep their order)."""
    return sorted(range(len(p_values)), key=p_values.__getitem__)


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error), in the input's order."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 0.0
    for rank, index in enumerate(_ascending(p_values)):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the input's order."""
    m = len(p_values)
    adjusted = [0.0] * m
    running = 1.0
    for position, index in enumerate(reversed(_ascending(p_values))):
        rank = m - position
        running = min(running, p_values[index] * m / rank)
        adjusted[index] = min(1.0, running)
    return adjusted
