"""Starting a `promptlooper serve` process for a benchmark and waiting until it answers."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "promptlooper"]


def start_server(env: Mapping[str, str], port: int, *flags: str) -> subprocess.Popen:
    """``promptlooper serve --port PORT FLAGS`` with ``env``, once ``/api/health`` answers."""
    server = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), *flags], env=dict(env), cwd=ROOT,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=1)
            return server
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("the server did not start")


def run_cli(args: Sequence[str], env: Mapping[str, str]) -> None:
    subprocess.run([*CLI, *args], env=dict(env), check=True, capture_output=True, cwd=ROOT)
