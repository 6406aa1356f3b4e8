"""A Ray address that is wrong, or where nothing answers, is one line and exit 2 within
RAY_CONNECT_SECONDS, and a sweep is not created before the cluster is joined: as the README
promises of every CLI error (Ray on its own retries such an address for minutes)."""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ticket-triage" / "sweep.yaml"


RAY_IMPORTED = "ray imported:"

# The CLI as `python -m promptlooper` runs it, then (however it exits) whether Ray was imported:
# Ray starts no process of its own unless it is imported.
_CLI_THEN_REPORT_RAY = f"""
import runpy, sys
sys.argv = ["promptlooper", *sys.argv[1:]]
try:
    runpy.run_module("promptlooper", run_name="__main__", alter_sys=True)
finally:
    print("{RAY_IMPORTED}", "ray" in sys.modules)
"""


def _promptlooper(tmp_path: Path, *args: str, **env: str) -> tuple[Any, float]:
    """``promptlooper ARGS`` in a process of its own (joining Ray leaves threads behind) on a
    fresh SQLite database, with ``env`` set; the outcome and how long it took. Its stdout ends
    with whether the command imported Ray."""
    inherited = {
        k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "API_KEY", "REDIS_URL")
    }
    environment = {
        **inherited,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'cli.db'}",
        "DATA_DIR": str(tmp_path / "data"),
        **env,
    }
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", _CLI_THEN_REPORT_RAY, *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return done, time.monotonic() - started


def _silent_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("address", ["127.0.0.1:99999", "127.0.0.1:0", "127.0.0.1:port"])
def test_an_address_whose_port_is_not_one_is_refused_at_once(tmp_path: Path, address: str):
    done, _ = _promptlooper(tmp_path, "ray", "status", "--ray", address)
    assert done.returncode == 2, done
    assert done.stderr.strip().splitlines() == [
        f"error: --ray: '{address}' is not host:port with a port from 1 to 65535"
    ]
    done, _ = _promptlooper(tmp_path, "ray", "status", RAY_ADDRESS=address)
    assert done.returncode == 2, done
    assert "RAY_ADDRESS" in done.stderr
    assert "65535" in done.stderr


def test_an_address_where_nothing_answers_fails_within_the_setting(tmp_path: Path):
    address = f"127.0.0.1:{_silent_port()}"
    done, took = _promptlooper(tmp_path, "ray", "status", "--ray", address, RAY_CONNECT_SECONDS="3")
    assert done.returncode == 2, done
    # Ray's own warning that it cannot set a SIGTERM handler from the joining thread is quiet
    assert done.stderr.splitlines() == [
        f"connecting to the Ray cluster at {address} …",
        f"error: cannot join the Ray cluster at {address}: no answer within 3 s (nothing "
        "listening there, or a cluster that refuses RAY_AUTH_TOKEN; RAY_CONNECT_SECONDS sets "
        "the wait)",
    ]
    assert took < 60

    assert _promptlooper(tmp_path, "db", "upgrade")[0].returncode == 0
    done, _ = _promptlooper(
        tmp_path, "sweep", "run", str(EXAMPLE), "--ray", address, RAY_CONNECT_SECONDS="3"
    )
    assert done.returncode == 2, done
    assert f"error: cannot join the Ray cluster at {address}" in done.stderr
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("select count(*) from experiments").fetchone() == (0,)


def test_a_server_whose_cluster_does_not_answer_does_not_start(tmp_path: Path):
    address = f"127.0.0.1:{_silent_port()}"
    done, _ = _promptlooper(
        tmp_path, "serve", "--port", str(_silent_port()), "--ray", address, RAY_CONNECT_SECONDS="3"
    )
    assert done.returncode == 2, done
    assert f"error: cannot join the Ray cluster at {address}: no answer within 3 s" in done.stderr


NOT_AN_ADDRESS = (
    "is not the host:port of a Ray cluster's head node; PromptLooper joins a running cluster "
    "and starts none: start one with `ray start --head --port PORT` and give its address"
)


@pytest.mark.parametrize("address", ["local", "auto", "127.0.0.1", "ray://local", "http://h:1"])
def test_an_address_that_is_no_head_node_s_is_refused_before_ray_is_imported(
    tmp_path: Path, address: str
):
    """``local`` and ``auto`` would have Ray start (or look for) a cluster of its own, whose
    processes outlive the command: refused at once, and Ray never even imported."""
    done, took = _promptlooper(tmp_path, "sweep", "run", str(EXAMPLE), "--ray", address)

    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [f"error: --ray: '{address}' {NOT_AN_ADDRESS}"]
    assert done.stdout.splitlines()[-1] == f"{RAY_IMPORTED} False"
    assert took < 30
    assert not (tmp_path / "cli.db").exists() or _experiments(tmp_path) == 0


def test_a_server_given_local_refuses_to_start_before_ray_is_imported(tmp_path: Path):
    done, _ = _promptlooper(tmp_path, "serve", "--port", str(_silent_port()), "--ray", "local")

    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [f"error: --ray: 'local' {NOT_AN_ADDRESS}"]
    assert done.stdout.splitlines()[-1] == f"{RAY_IMPORTED} False"


@pytest.mark.parametrize("command", [("ray", "status"), ("sweep", "run", str(EXAMPLE)), ("serve",)])
def test_ray_address_local_is_an_invalid_setting_before_ray_is_imported(
    tmp_path: Path, command: tuple[str, ...]
):
    done, _ = _promptlooper(tmp_path, *command, RAY_ADDRESS="local")

    assert done.returncode == 2, done
    assert done.stderr.splitlines() == [
        f"error: invalid setting RAY_ADDRESS: 'local' {NOT_AN_ADDRESS}"
    ]
    assert done.stdout.splitlines()[-1] == f"{RAY_IMPORTED} False"


def _experiments(tmp_path: Path) -> int:
    with sqlite3.connect(tmp_path / "cli.db") as db:
        return db.execute("select count(*) from experiments").fetchone()[0]
