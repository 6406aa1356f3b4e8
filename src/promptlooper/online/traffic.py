"""Who is served what, given the arms a guardrail stopped and a bandit's weights. Pure.

Two sets of numbers are kept apart on purpose. The *hashing weights* cut the hash range into
arms (a bandit's weights in force, otherwise the allocations): stopping an arm leaves them as
they are, so no other unit moves. The *shares* are the traffic each arm is actually served:
the hashing weights with a stopped arm's share moved to control, because its units are served
the control from then on. A unit still counts in the arm it is assigned (intent to treat), so
the SRM check compares the units with the hashing weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol


class Experiment(Protocol):
    variants: list[dict[str, Any]]
    stopped_arms: dict[str, Any]
    weights: list[float] | None


def hashing_weights(experiment: Experiment) -> list[float]:
    """Fractions summing to 1, in the order of the variants."""
    if experiment.weights is not None and len(experiment.weights) == len(experiment.variants):
        return list(experiment.weights)
    return [v["allocation"] / 100 for v in experiment.variants]


def shares(experiment: Experiment) -> dict[str, float]:
    """Variant key → the share of traffic it is served now."""
    weights = hashing_weights(experiment)
    keys = [v["variant_key"] for v in experiment.variants]
    found = dict(zip(keys, weights, strict=True))
    control = keys[0]
    for key in experiment.stopped_arms or {}:
        if key in found and key != control:
            found[control] += found[key]
            found[key] = 0.0
    return found


def served(experiment: Experiment, variant_key: str | None) -> str | None:
    """The arm a unit hashed (or stuck) to ``variant_key`` is served: control if a guardrail
    stopped that arm."""
    if variant_key is not None and variant_key in (experiment.stopped_arms or {}):
        return str(experiment.variants[0]["variant_key"])
    return variant_key


DIGITS = 12
"""Weights are rounded to this many decimals: far finer than any split of traffic, and a
weight of 0.95 reads 0.95, not 0.9500000000000001."""


def with_floor(chances: Sequence[float], floor: float) -> list[float]:
    """Weights summing to 1 that give every arm at least ``floor`` (equal weights when the
    floors alone would take all the traffic)."""
    k = len(chances)
    if floor * k >= 1:
        return [round(1 / k, DIGITS)] * k
    return [round(floor + (1 - k * floor) * c, DIGITS) for c in chances]


def refloor(weights: Sequence[float], old: float, new: float) -> list[float]:
    """Weights lifted to ``old`` moved onto the floor ``new``: the chances they came from
    (``with_floor`` undone) lifted again, so a raised floor applies at once, not at the next
    update."""
    k = len(weights)
    if old * k >= 1:  # equal weights: the chances are not known, and equal weights hold any floor
        return list(weights)
    return with_floor([(w - old) / (1 - k * old) for w in weights], new)
