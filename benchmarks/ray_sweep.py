"""The same sweep in one process and on a two-node local Ray cluster, side by side.

Scenario: 12 configs (2 models × 3 temperatures × 2 prompts) × N rows (5,000 by default: 60,000
calls) on the built-in `mock` provider answering after 50 ms, one scorer, the cache off,
concurrency 256, SQLite, each run a fresh `promptlooper sweep run` process on a fresh database.
The cluster is a head node and a worker node on this machine (one CPU each, token
authentication on), started once and stopped by PID at the end.

Reported for each: wall time; the driver's CPU (user + system, from `wait4()`) per result and
its peak RSS; and, on the cluster, the CPU its processes (raylets, workers, the coordinator)
spent, from psutil before and after. "Dispatch overhead per call" is the CPU the cluster run
spent in all, driver and cluster, per call, less what the in-process run spent per call: what
handing the work out and back costs, the calls themselves being the same. Both nodes share
this machine's cores, so the wall times are not a speed-up. Run from the repository root:

    .venv/bin/python -m benchmarks.ray_sweep [--rows 5000] [--repeats 1]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil
import yaml
from tests.scaleout.local_cluster import LocalCluster, start_cluster

from benchmarks.server import CLI, ROOT
from benchmarks.sweep_memory import write_sweep

HEAD_PORT = 6399
WORKER_PORTS = range(20000, 21000)


class ClusterCpu:
    """CPU the cluster's processes spend while it runs, sampled every 0.2 s: Ray ends a job's
    workers when its driver exits, so what they spent is read before they are gone."""

    def __init__(self, cluster: LocalCluster) -> None:
        self._cluster = cluster
        self._start = self._sample()
        self._last = dict(self._start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _sample(self) -> dict[int, float]:
        found = {}
        for process in self._cluster.processes():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                found[process.pid] = times.user + times.system
        return found

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            self._last.update(self._sample())

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        self._last.update(self._sample())
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in self._last.items())


def run(sweep: Path, database: str, env: dict[str, str], ray: str | None) -> dict[str, float]:
    args = [*CLI, "sweep", "run", str(sweep), *(("--ray", ray) if ray else ())]
    started = time.perf_counter()
    process = subprocess.Popen(
        args,
        env={**env, "DATABASE_URL": database},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    stderr = process.stderr.read() if process.stderr else ""
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"sweep failed: {stderr}")
    return {
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss_mb": usage.ru_maxrss / 1024,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    calls = 12 * args.rows
    folder = Path(tempfile.mkdtemp(prefix="pl-ray-bench-"))
    sweep = write_sweep(folder, args.rows)
    document = yaml.safe_load(sweep.read_text())
    document["providers"]["mock"]["latency_ms"] = 50
    document["cache"] = False
    sweep.write_text(yaml.safe_dump(document))

    cluster = start_cluster(folder / "ray", head_port=HEAD_PORT, worker_ports=WORKER_PORTS)
    env = {**os.environ, **cluster.env, "PYTHONPATH": str(ROOT / "src")}
    env.pop("RAY_ADDRESS", None)
    results: dict[str, list[dict[str, float]]] = {"in process": [], "ray, 2 nodes": []}
    try:
        for repeat in range(args.repeats):
            here = run(sweep, f"sqlite:///{folder / f'here-{repeat}.db'}", env, None)
            results["in process"].append({**here, "cluster_cpu": 0.0})
            spent = ClusterCpu(cluster)
            there = run(sweep, f"sqlite:///{folder / f'ray-{repeat}.db'}", env, cluster.address)
            results["ray, 2 nodes"].append({**there, "cluster_cpu": spent.stop()})
    finally:
        cluster.stop()

    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in results[name])

    base = (median("in process", "cpu")) / calls
    print(f"{calls:,} calls, 50 ms each, concurrency 256, SQLite; medians of {args.repeats}")
    print(
        "| where | wall s | driver CPU ms/result | driver peak RSS MB | cluster CPU s "
        "| dispatch overhead ms/call |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name in results:
        cpu, cluster_cpu = median(name, "cpu"), median(name, "cluster_cpu")
        overhead = (cpu + cluster_cpu) / calls - base if name != "in process" else 0.0
        print(
            f"| {name} | {median(name, 'wall'):.1f} | {cpu / calls * 1000:.3f} "
            f"| {median(name, 'rss_mb'):.0f} | {cluster_cpu:.1f} | {overhead * 1000:.3f} |"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
