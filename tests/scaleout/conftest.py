"""A real two-node Ray cluster on this machine for the tests of this folder that ask for it.

The head listens on a free port in 6390-6399 (never Redis's 6379), its workers on ports in
20000-20999 (``TEST_RAY_HEAD_PORTS`` and ``TEST_RAY_WORKER_PORTS`` choose others); token
authentication is on, as on a cluster that takes work from a network. Only the processes this
fixture started are stopped.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from tests.cli.conftest import cli  # noqa: F401 (fixture)
from tests.scaleout.local_cluster import LocalCluster, start_cluster
from tests.sweeps.conftest import owner, project_id  # noqa: F401 (fixtures)


def _ports(variable: str, default: str) -> range:
    """A port range from ``variable`` (``LOW-HIGH``, inclusive), so that two checkouts can
    run these tests side by side, each with a cluster of its own."""
    low, _, high = os.environ.get(variable, default).partition("-")
    return range(int(low), int(high) + 1)


HEAD_PORTS = _ports("TEST_RAY_HEAD_PORTS", "6390-6399")
WORKER_PORTS = _ports("TEST_RAY_WORKER_PORTS", "20000-20999")
# A node that stops answering is declared dead within about two seconds, so that the batches
# it held are given to another node quickly.
FAST_FAILURE_DETECTION = json.dumps(
    {
        "health_check_period_ms": 500,
        "health_check_timeout_ms": 500,
        "health_check_failure_threshold": 3,
    }
)


def _free_head_port() -> int:
    for port in HEAD_PORTS:
        with socket.socket() as sock:
            try:
                sock.bind(("0.0.0.0", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {HEAD_PORTS} for the Ray head node")


@pytest.fixture(scope="package")
def ray_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = start_cluster(
        tmp_path_factory.mktemp("ray"),
        head_port=_free_head_port(),
        worker_ports=WORKER_PORTS,
        system_config=FAST_FAILURE_DETECTION,
    )
    # Ray reads its token once, when it first needs it: set before this process connects.
    saved = {name: os.environ.get(name) for name in ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN")}
    os.environ.update({name: cluster.env[name] for name in saved})
    from promptlooper import raycluster

    try:
        raycluster.connect(cluster.address)
        yield cluster
    finally:
        raycluster.disconnect()
        cluster.stop()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
