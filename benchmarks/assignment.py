"""Assignments per second: PromptLooper's ``assign`` against the GrowthBook SDK's ``run``.

Both assign the same unit ids to the same experiment (three variants 20/30/50, 80 % coverage,
hashing version 2, one seed), in one process, alternating repeat by repeat so machine noise
hits both alike. Every pair of answers is compared too: a mismatch aborts the run.

    .venv/bin/python -m benchmarks.assignment --units 100000 --repeats 5
"""

from __future__ import annotations

import argparse
import statistics
import time

from growthbook import Experiment, GrowthBook

from promptlooper.online.assignment import assign

ALLOCATIONS = [20.0, 30.0, 50.0]
COVERAGE = 80.0
SEED = "bench-seed"


def ours(units: list[str]) -> list[int | None]:
    return [assign(unit, SEED, ALLOCATIONS, COVERAGE) for unit in units]


def growthbook(units: list[str]) -> list[int | None]:
    experiment = Experiment(
        key="bench",
        variations=[0, 1, 2],
        weights=[a / 100 for a in ALLOCATIONS],
        coverage=COVERAGE / 100,
        hashVersion=2,
        seed=SEED,
    )
    answers: list[int | None] = []
    for unit in units:
        result = GrowthBook(attributes={"id": unit}).run(experiment)
        answers.append(result.variationId if result.inExperiment else None)
    return answers


def timed(function, units: list[str]) -> tuple[float, list[int | None]]:
    start = time.perf_counter()
    answers = function(units)
    return len(units) / (time.perf_counter() - start), answers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--units", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    units = [f"visitor-{i:08d}" for i in range(args.units)]
    rates: dict[str, list[float]] = {"promptlooper": [], "growthbook": []}
    for _ in range(args.repeats):
        rate_ours, mine = timed(ours, units)
        rate_theirs, theirs = timed(growthbook, units)
        if mine != theirs:
            raise SystemExit("assignments differ from the GrowthBook SDK")
        rates["promptlooper"].append(rate_ours)
        rates["growthbook"].append(rate_theirs)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    print(f"{args.units} units × {args.repeats} repeats, identical assignments")
    for name, value in medians.items():
        print(f"{name:>13}: {value:>10,.0f} assignments/s (median)")
    ratios = [a / b for a, b in zip(rates["promptlooper"], rates["growthbook"], strict=True)]
    print(f"        ratio: {statistics.median(ratios):.1f}× (median of per-repeat ratios)")


if __name__ == "__main__":
    main()
