"""What one call to a base model's host costs: through a Ray actor vs through a worker process.

Scenario: the registry's `tiny-test` model on the CPU, loaded once in each host (a worker
process of this process, and a `HostActor` on a two-node local cluster started here: a head and
a worker node on this machine, one CPU each, token authentication on, stopped by PID at the
end). Both hosts are driven by `TrainingBackend.submit`, as the training API and `local:`
sweeps drive them. Measured, alternating between the two hosts each round:

- **round trip**: `drop` of a run the host does not hold, one call at a time (submit, wait for
  the answer): the call's trip there and back with next to no work in it;
- **pipelined**: the same call sent `--calls` times before any answer is read (FIFO per model
  makes that safe), the wall time divided by the calls: the cost per call when a client does
  not wait (`?wait=false`, a sweep's many `local:` calls);
- **smallest primitive**: `forward` of a one-text batch with a run's adapter, one at a time:
  a real primitive's round trip, the model's own work included.

Medians over the rounds of each round's median. Both nodes and this process share this
machine's cores, so the actor's trip is over the loopback interface, not a network. Run from
the repository root:

    .venv/bin/python -m benchmarks.ray_actor_call [--rounds 5] [--calls 200] [--head-port 6399]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from tests.scaleout.local_cluster import start_cluster

from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.registry import load_registry
from promptlooper.training.schemas import LossRequest

TINY = load_registry().get("tiny-test")
RUN = RunSpec(key="bench", seed=1, rank=4, alpha=8.0, dropout=0.0, target_modules=("q_proj",))
BATCH = LossRequest.model_validate({"examples": [{"text": "one two three four five"}]})
TIMEOUT = 300


def _round_trips(backend: TrainingBackend, calls: int, call: Callable[[], tuple]) -> float:
    """The median milliseconds of ``calls`` calls made one at a time."""
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        backend.submit(TINY, *call()).result(timeout=TIMEOUT)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def _pipelined(backend: TrainingBackend, calls: int) -> float:
    """Milliseconds per call with ``calls`` calls sent before the first answer is read."""
    start = time.perf_counter()
    futures = [backend.submit(TINY, "drop", "absent") for _ in range(calls)]
    for future in futures:
        future.result(timeout=TIMEOUT)
    return (time.perf_counter() - start) * 1000 / calls


def _forwards(calls: int) -> int:
    return max(10, calls // 10)


def measure(backend: TrainingBackend, calls: int) -> dict[str, float]:
    return {
        "round trip": _round_trips(backend, calls, lambda: ("drop", "absent")),
        "pipelined": _pipelined(backend, calls),
        "smallest primitive": _round_trips(
            backend, _forwards(calls), lambda: ("forward", RUN, BATCH)
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument(
        "--head-port", type=int, default=6399, help="workers: 1000 ports from 20000+50×(port-6390)"
    )
    args = parser.parse_args()
    low = 20000 + (args.head_port - 6390) * 50
    with tempfile.TemporaryDirectory(prefix="pl-actor-bench-") as folder:
        cluster = start_cluster(
            Path(folder) / "ray", head_port=args.head_port, worker_ports=range(low, low + 1000)
        )
        os.environ.update({k: cluster.env[k] for k in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")})
        hosts = {
            "worker process": TrainingBackend(Path(folder) / "here", "cpu"),
            "Ray actor": TrainingBackend(Path(folder) / "there", "cpu", cluster.address),
        }
        results: dict[str, list[dict[str, float]]] = {name: [] for name in hosts}
        try:
            for backend in hosts.values():  # load the model, create the run's adapter
                backend.submit(TINY, "forward", RUN, BATCH).result(timeout=TIMEOUT)
            for _ in range(args.rounds):
                for name, backend in hosts.items():
                    results[name].append(measure(backend, args.calls))
        finally:
            for backend in hosts.values():
                backend.shutdown()
            from promptlooper import raycluster

            raycluster.disconnect()
            cluster.stop()

    print(f"{args.rounds} rounds, {args.calls} calls each (forward: {_forwards(args.calls)})")
    print(f"{'ms per call (median)':<22}" + "".join(f"{name:>18}" for name in hosts))
    for key in results["worker process"][0]:
        row = [statistics.median(r[key] for r in results[name]) for name in hosts]
        print(f"{key:<22}" + "".join(f"{value:>18.3f}" for value in row))


if __name__ == "__main__":
    main()
