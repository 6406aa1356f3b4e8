"""A two-node Ray cluster on 127.0.0.1 for tests and benchmarks, started and stopped by PID.

Its nodes advertise 127.0.0.1 and the dashboard is off (bound to 127.0.0.1 were it on), but
Ray's own servers listen on every interface whatever a node advertises: token authentication
keeps strangers out (see "Keeping a cluster's ports private" in ``docs/scaling.md``).

Every process of the cluster is found through the cluster's own temporary directory (which
its daemons name on their command lines) and their descendants, so stopping it never touches
another cluster on the machine, as ``ray stop`` would.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class LocalCluster:
    """A head node and worker nodes joined to it, each with fixed ports in ``ports``."""

    temp_dir: Path
    head_port: int
    worker_ports: range
    env: dict[str, str]
    nodes: list[dict[str, int]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.head_port}"

    def _ports(self, index: int) -> dict[str, int]:
        """Ten ports per node from the top of ``worker_ports``; workers take the rest."""
        top = self.worker_ports.stop - 10 * (index + 1)
        names = (
            "node-manager-port",
            "object-manager-port",
            "dashboard-agent-listen-port",
            "dashboard-agent-grpc-port",
            "runtime-env-agent-port",
            "metrics-export-port",
            "dashboard-port",
        )
        return {name: top + offset for offset, name in enumerate(names)}

    def _worker_range(self, index: int) -> tuple[int, int]:
        span = (len(self.worker_ports) - 100) // 8
        low = self.worker_ports.start + index * span
        return low, low + span - 1

    def start_node(self, num_cpus: int, system_config: str | None = None) -> int:
        """Start the head (the first call) or a worker node joined to it; returns its index."""
        index = len(self.nodes)
        ports = self._ports(index)
        low, high = self._worker_range(index)
        command = [
            RAY,
            "start",
            "--node-ip-address=127.0.0.1",
            f"--num-cpus={num_cpus}",
            f"--min-worker-port={low}",
            f"--max-worker-port={high}",
            f"--temp-dir={self.temp_dir}",
            "--disable-usage-stats",
            *(f"--{name}={port}" for name, port in ports.items() if name != "dashboard-port"),
        ]
        if index == 0:
            command += [
                "--head",
                f"--port={self.head_port}",
                "--include-dashboard=false",
                "--dashboard-host=127.0.0.1",  # should the dashboard ever be on: this machine only
                *([f"--system-config={system_config}"] if system_config else []),
                f"--dashboard-port={ports['dashboard-port']}",
            ]
        else:
            command.append(f"--address={self.address}")
        subprocess.run(command, env=self.env, check=True, capture_output=True, timeout=120)
        self.nodes.append(ports)
        return index

    def processes(self, index: int | None = None) -> list[psutil.Process]:
        """The cluster's processes (or node ``index``'s): its daemons and their children."""
        found: dict[int, psutil.Process] = {}
        marker = str(self.temp_dir)
        port = None
        if index is not None:
            port = f"--node_manager_port={self.nodes[index]['node-manager-port']}"
        mine = {os.getpid(), *(parent.pid for parent in psutil.Process().parents())}
        for process in psutil.process_iter(["cmdline"]):
            if process.pid in mine:
                continue
            cmdline = " ".join(process.info["cmdline"] or ())
            if marker in cmdline and (port is None or port in cmdline):
                found[process.pid] = process
                with contextlib.suppress(psutil.Error):
                    found.update({child.pid: child for child in process.children(recursive=True)})
        return list(found.values())

    def index_of(self, node_manager_port: int) -> int:
        """The index of the node that listens on ``node_manager_port``."""
        ports = [node["node-manager-port"] for node in self.nodes]
        return ports.index(node_manager_port)

    def kill_node(self, index: int) -> None:
        """Kill node ``index`` at once, as a machine that loses power would be."""
        _kill(self.processes(index))

    def stop(self) -> None:
        _kill(self.processes())


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()
    deadline = time.monotonic() + 10
    while any(_running(process) for process in processes) and time.monotonic() < deadline:
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    """Whether it still runs: a killed process whose parent is gone may stay a zombie."""
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_cluster(
    temp_dir: Path,
    *,
    head_port: int,
    worker_ports: range,
    cpus: tuple[int, ...] = (1, 1),
    system_config: str | None = None,
) -> LocalCluster:
    """Start a head node and a worker node per further entry of ``cpus``, with token
    authentication; the caller's environment gets the token, so that it can connect."""
    token = secrets.token_hex(16)
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token}
    temp_dir.mkdir(parents=True, exist_ok=True)
    cluster = LocalCluster(temp_dir, head_port, worker_ports, env)
    try:
        for index, count in enumerate(cpus):
            cluster.start_node(count, system_config if index == 0 else None)
    except BaseException:
        cluster.stop()
        shutil.rmtree(temp_dir, ignore_errors=True)
        raise
    return cluster
