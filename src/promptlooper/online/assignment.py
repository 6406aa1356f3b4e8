"""Deterministic assignment, bit-for-bit compatible with GrowthBook's SDKs (hashing version 2).

A unit (a session or user id) hashes with the experiment's seed to a number in [0, 1); the
variants' weights, scaled by the traffic coverage, cut [0, 1) into consecutive ranges, and the
unit gets the variant whose range holds its number, or none when it falls in the uncovered
tail. Because this is GrowthBook's published algorithm (FNV-1a 32 of ``seed + unit``, then
FNV-1a 32 of that number's decimal string, modulo 10,000), a GrowthBook SDK configured with
the same key, seed, weights and coverage puts every unit in the same variant. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

FNV_OFFSET = 0x811C9DC5
FNV_PRIME = 0x01000193
MASK = 0xFFFFFFFF
Range = tuple[float, float]


def fnv1a32(text: str, value: int = FNV_OFFSET) -> int:
    """FNV-1a over the string's code points, as the Python SDK does (identical to the
    JavaScript SDK's UTF-16 code units for every character below U+10000). ``value``, the
    hash of a prefix, goes on from that prefix: ``fnv1a32(b, fnv1a32(a)) == fnv1a32(a + b)``,
    so a batch of units hashes its experiment's seed once. An ASCII string's bytes are its
    code points, read without a call per character: every served call's unit is hashed."""
    prime, mask = FNV_PRIME, MASK
    for code in text.encode() if text.isascii() else map(ord, text):
        value = ((value ^ code) * prime) & mask
    return value


def hash_unit(seed: str, unit_id: str) -> float:
    """Hashing version 2: a number in [0, 1) with four decimal places."""
    return _hash_seeded(fnv1a32(seed), unit_id)


def _hash_seeded(seeded: int, unit_id: str) -> float:
    return fnv1a32(str(fnv1a32(unit_id, seeded))) % 10_000 / 10_000


def bucket_ranges(weights: Sequence[float], coverage: float = 1.0) -> list[Range]:
    """One range per variant: weights (fractions summing to 1) laid end to end, each range
    shortened to ``coverage`` of its weight; weights that do not sum to 1 (±0.01) or an empty
    list fall back to equal weights, as in the SDKs."""
    count = len(weights)
    coverage = min(1.0, max(0.0, coverage))
    if count == 0:
        return []
    if not 0.99 <= sum(weights) <= 1.01:
        weights = [1 / count] * count
    ranges: list[Range] = []
    start = 0.0
    for weight in weights:
        ranges.append((start, start + coverage * weight))
        start += weight
    return ranges


def choose(n: float, ranges: Sequence[Range]) -> int | None:
    """The index of the range holding ``n`` (start inclusive, end exclusive), or None."""
    for index, (start, end) in enumerate(ranges):
        if start <= n < end:
            return index
    return None


def assign(
    unit_id: str, seed: str, allocations: Sequence[float], coverage_percent: float = 100.0
) -> int | None:
    """The variant index for ``unit_id``, or None when the unit is outside the experiment.

    ``allocations`` are percentages summing to 100 and ``coverage_percent`` the share of
    traffic in the experiment, as the registry stores them.
    """
    return assigner(seed, allocations, coverage_percent)(unit_id)


def assigner(
    seed: str, allocations: Sequence[float], coverage_percent: float = 100.0
) -> Callable[[str], int | None]:
    """``assign`` for one experiment and many units: its ranges and its seed's hash are
    worked out once, not once per unit."""
    ranges = bucket_ranges([a / 100 for a in allocations], coverage_percent / 100)
    seeded = fnv1a32(seed)

    def assign_one(unit_id: str) -> int | None:
        return choose(_hash_seeded(seeded, unit_id), ranges) if unit_id else None

    return assign_one


def route_matches(path: str, patterns: Sequence[str]) -> bool:
    """Whether ``path`` is eligible: no patterns means every path; ``/blog/*`` matches
    ``/blog`` and everything under it; anything else must match exactly (a trailing slash
    aside)."""
    if not patterns:
        return True
    normalised = path.rstrip("/") or "/"
    for pattern in patterns:
        if pattern.endswith("/*"):
            prefix = pattern[:-2].rstrip("/")
            if normalised == (prefix or "/") or normalised.startswith(prefix + "/"):
                return True
        elif normalised == (pattern.rstrip("/") or "/"):
            return True
    return False
