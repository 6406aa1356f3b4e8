"""Adjusted p-values for a family of comparisons, shared by the A/B results and the sweeps.

A page that compares several variants (or several sweep configs against the leader) makes
several tests at once: unadjusted, some of them come out "significant" by chance alone.
Pure NumPy: no I/O, importable from any domain.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (family-wise error), in the input's order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")
    adjusted = np.empty(m)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini–Hochberg adjusted p-values (false discovery rate), in the input's order."""
    m = len(p_values)
    order = np.argsort(p_values, kind="stable")[::-1]
    adjusted = np.empty(m)
    running = 1.0
    for position, index in enumerate(order):
        rank = m - position
        running = min(running, p_values[index] * m / rank)
        adjusted[index] = min(1.0, running)
    return adjusted.tolist()
