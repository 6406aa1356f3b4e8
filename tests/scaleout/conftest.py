"""A real two-node Ray cluster on this machine for the tests of this folder that ask for it.

The head listens on a free port in 6390-6399 (never Redis's 6379), its workers on ports in
20000-20999; token authentication is on, as on a cluster that takes work from a network, and
the dashboard is off. Two test sessions on one machine each take their own ports:
``PROMPTLOOPER_TEST_RAY_PORT=6410`` moves the head to 6410-6419 and the workers to 21000-21999
(each 10 ports of head range, 500 of worker ports). Only the processes this fixture started
are stopped.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator

import pytest

from tests.cli.conftest import cli  # noqa: F401 (fixture)
from tests.e2e.conftest import deployed_db, serve  # noqa: F401 (fixtures)
from tests.scaleout.local_cluster import LocalCluster, start_cluster
from tests.sweeps.conftest import owner, project_id  # noqa: F401 (fixtures)

_BASE = int(os.environ.get("PROMPTLOOPER_TEST_RAY_PORT", "6390"))
HEAD_PORTS = range(_BASE, _BASE + 10)
WORKER_PORTS = range(20000 + (_BASE - 6390) * 50, 21000 + (_BASE - 6390) * 50)
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
    raise RuntimeError(
        f"no free port in {HEAD_PORTS.start}-{HEAD_PORTS.stop - 1} for the Ray head node "
        "(PROMPTLOOPER_TEST_RAY_PORT moves the range)"
    )


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
