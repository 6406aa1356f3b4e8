"""Racing against the full grid on sweeps whose best config is known.

48 configs × 400 rows through the ``mock`` provider: config ``mNN`` is the mock model ``mNN``,
whose accuracy the provider section sets (the best 0.85, the second 0.80, three between 0.70
and 0.75, the other 43 between 0.30 and 0.50). Each seed changes the dataset's wording, so the
mock's answers (seeded by the prompt) change too, and the race's row order. Both strategies run
in this process on one SQLite database without the cache, so every run is a provider call.

    .venv/bin/python -m benchmarks.search_racing --seeds 20

For each seed: the calls each strategy made, the config it ranks first (and that config's true
accuracy), and the wall time. A pick is right when its true accuracy is within 2 points of
the best's.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from promptlooper.cli.sweeps import principal_for
from promptlooper.db.engine import create_engine, create_sessionmaker
from promptlooper.migrations import upgrade
from promptlooper.projects import service as projects
from promptlooper.settings import Settings
from promptlooper.sweeps import service
from promptlooper.sweeps.execution import ExecutionOptions, run_experiment
from promptlooper.sweeps.providers import ProviderPolicy
from promptlooper.sweeps.spec import parse_spec

LABELS = {"invoice": "billing", "crash": "bug", "password": "account", "parcel": "shipping"}


def accuracies(configs: int) -> dict[str, float]:
    """The best 0.85, the second 0.80, three at 0.70–0.75, the rest far behind."""
    close = [0.75, 0.72, 0.70]
    far = [0.30 + 0.20 * i / max(1, configs - 6) for i in range(configs - 5)]
    values = [0.85, 0.80, *close, *far][:configs]
    return {f"m{i:02d}": round(v, 4) for i, v in enumerate(values)}


def document(strategy: str, seed: int, configs: int, rows: int) -> dict[str, Any]:
    models = accuracies(configs)
    keywords = list(LABELS)
    data = [
        {
            "input": f"Ticket {seed}-{i}: a question about my {keywords[i % 4]}",
            "expected": LABELS[keywords[i % 4]],
        }
        for i in range(rows)
    ]
    search: dict[str, Any] = {"strategy": "grid"}
    if strategy == "racing":
        search = {"strategy": "racing", "alpha": 0.05, "seed": seed}
    return {
        "name": f"{strategy}-{seed}",
        "parameter_space": {
            "model": [f"mock:{name}" for name in models],
            "prompt": "Classify in one word: {{ input }}",
        },
        "dataset": {"rows": data},
        "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
        "providers": {
            "mock": {
                "models": {name: {"accuracy": a} for name, a in models.items()},
                "knowledge": LABELS,
            }
        },
        "search": search,
        "cache": False,
        "concurrency": 64,
    }


async def run_one(settings: Settings, engine: Any, doc: dict[str, Any]) -> tuple[int, str, float]:
    """Calls made, the model ranked first, and the wall time of one sweep."""
    sessionmaker = create_sessionmaker(engine)
    policy = ProviderPolicy.workstation(settings)
    async with sessionmaker() as session:
        principal = await principal_for(session, None)
        project = await projects.get_or_create_project(session, principal, "bench")
        experiment = await service.create_experiment(
            session, principal, project.id, parse_spec(doc), policy=policy
        )
        await session.commit()
    began = time.perf_counter()
    result = await run_experiment(
        engine, experiment.id, options=ExecutionOptions(policy=policy, concurrency=64)
    )
    wall = time.perf_counter() - began
    async with sessionmaker() as session:
        summary = await service.summary(session, experiment)
    return result.progress.finished, summary.ranked[0].parameters["model"], wall


async def main(seeds: int, configs: int, rows: int) -> None:
    truth = accuracies(configs)
    best = max(truth.values())
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{Path(folder) / 'bench.db'}"
        settings = Settings(database_url=url, data_dir=Path(folder))
        engine = create_engine(settings)
        await upgrade(engine)
        results: dict[str, list[tuple[int, str, float]]] = {"grid": [], "racing": []}
        print(
            "| seed | grid calls | grid pick (accuracy) | grid s | racing calls "
            "| racing pick (accuracy) | racing s |"
        )
        print("|" + " --- |" * 7)
        for seed in range(seeds):
            row = [str(seed)]
            for strategy in ("grid", "racing"):
                calls, model, wall = await run_one(
                    settings, engine, document(strategy, seed, configs, rows)
                )
                results[strategy].append((calls, model, wall))
                name = model.partition(":")[2]
                row += [f"{calls:,}", f"{name} ({truth[name]:.2f})", f"{wall:.1f}"]
            print("| " + " | ".join(row) + " |", flush=True)
        await engine.dispose()
    print()
    for strategy, runs in results.items():
        right = sum(truth[m.partition(":")[2]] >= best - 0.02 for _, m, _ in runs)
        calls = statistics.median(c for c, _, _ in runs)
        wall = statistics.median(w for _, _, w in runs)
        print(
            f"{strategy}: right pick in {right}/{len(runs)} seeds, median calls {calls:,.0f}, "
            f"median wall {wall:.1f} s"
        )
    ratio = statistics.median(
        r[0] / g[0] for r, g in zip(results["racing"], results["grid"], strict=True)
    )
    print(
        f"racing / grid calls: median {ratio:.1%}, at most "
        f"{max(r[0] / g[0] for r, g in zip(results['racing'], results['grid'], strict=True)):.1%}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--configs", type=int, default=48)
    parser.add_argument("--rows", type=int, default=400)
    args = parser.parse_args()
    asyncio.run(main(args.seeds, args.configs, args.rows))
