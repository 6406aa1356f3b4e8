"""``promptlooper demo`` up to the point where it starts serving."""

from __future__ import annotations

import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from promptlooper.cli import server
from tests.cli.inprocess import Invoke

EXAMPLES = Path(__file__).parents[2] / "examples" / "ticket-triage"
ID = re.compile(r"experiment ([0-9a-f-]{36})")
CLI = [sys.executable, "-m", "promptlooper"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_a_demo_without_its_sweep_file_sets_up_the_rest_and_says_so(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[int] = []
    monkeypatch.setattr(
        server, "_run_server", lambda _settings, sock: served.append(sock.getsockname()[1])
    )
    port = _free_port()

    outcome = cli("demo", "--sweep", str(tmp_path / "missing.yaml"), "--port", str(port))

    assert outcome.code == 0, outcome.err
    # A line per step as it starts, since each can take minutes on a busy machine.
    steps = [
        "Upgrading the database schema…",
        "Seeding the demo user, agent and A/B experiments (14 days of visitors)…",
        "skipping the example sweep",
        "Training the demo run (12 steps of tiny-test)…",
        "admin user:  demo",
    ]
    assert sorted(steps, key=outcome.out.index) == steps, outcome.out
    assert "experiment:  none run" in outcome.out
    assert "/experiments/None" not in outcome.out
    assert "/ui/sweeps/None" not in outcome.out
    assert "admin user:  demo" in outcome.out
    assert served == [port]


def test_a_plain_sweep_list_after_the_demo_shows_the_demo_sweep(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_run_server", lambda _settings, _sock: None)
    demo = cli("demo", "--sweep", str(EXAMPLES / "sweep.yaml"), "--port", str(_free_port()))
    experiment_id = ID.search(demo.err)
    assert experiment_id is not None, demo.err
    assert f"Running the demo sweep {EXAMPLES / 'sweep.yaml'}" in demo.out

    listed = cli("sweep", "list")
    narrowed = cli("sweep", "list", "--user", "demo", "--project", "demo")

    row = next(line for line in listed.out.splitlines() if experiment_id[1] in line)
    assert re.search(r"\bdemo\b.*\bdemo\b.*ticket-triage", row), row
    assert experiment_id[1] in narrowed.out
    assert f"in the CLI:  promptlooper sweep show {experiment_id[1]}" in demo.out
    assert "every sweep: promptlooper sweep list" in demo.out
    assert f"/ui/sweeps/{experiment_id[1]}  (API: /api/experiments/" in demo.out


def test_listing_an_unknown_project_is_an_error_and_creates_nothing(
    cli: Invoke, tmp_path: Path
) -> None:
    typo = cli("sweep", "list", "--project", "typo")
    unknown_user = cli("sweep", "list", "--user", "nobody")
    empty = cli("sweep", "list")

    assert (typo.code, typo.err) == (2, "error: No project named 'typo'\n")
    assert (unknown_user.code, unknown_user.err) == (2, "error: No user named 'nobody'\n")
    assert empty.code == 0
    with sqlite3.connect(tmp_path / "cli.db") as db:
        assert db.execute("SELECT count(*) FROM projects").fetchone() == (0,)


@pytest.mark.parametrize("command", ["demo", "serve"])
def test_a_busy_port_fails_at_once_and_changes_nothing(tmp_path: Path, command: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "REDIS_URL"}}
    env |= {"DATABASE_URL": f"sqlite:///{tmp_path / 'demo.db'}", "DATA_DIR": str(tmp_path)}
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = ["--port", str(port)] + (
            ["--sweep", str(EXAMPLES / "sweep.yaml")] * (command == "demo")
        )
        result = subprocess.run(
            [*CLI, command, *args], env=env, capture_output=True, text=True, timeout=120
        )

    assert (result.returncode, result.stderr) == (
        2,
        f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n",
    )
    assert result.stdout == ""
    assert not (tmp_path / "demo.db").exists()  # no schema, no demo user, no sweep


def test_the_demo_sets_up_an_agent_with_two_variants_and_served_calls_once(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_run_server", lambda _settings, _sock: None)
    missing = str(tmp_path / "missing.yaml")

    first = cli("demo", "--sweep", missing, "--port", str(_free_port()))
    second = cli("demo", "--sweep", missing, "--port", str(_free_port()))
    agents = cli("agent", "list", "--project", "demo", "--user", "demo")
    variants = cli("variant", "list", "ticket-triage", "--project", "demo", "--user", "demo")
    metrics = cli("agent", "metrics", "ticket-triage", "--project", "demo", "--user", "demo")

    assert first.code == second.code == 0
    assert "web UI:      http://127.0.0.1:" in first.out
    assert agents.out.count("ticket-triage") == 1, agents.out
    assert "concise" in agents.out
    assert re.search(r"concise\s*│\s*yes", variants.out), variants.out
    assert "careful" in variants.out
    assert "240" in metrics.out, metrics.out


def test_the_demo_leaves_one_short_training_run_with_a_curve_and_a_checkpoint(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server, "_run_server", lambda _settings, _sock: None)
    missing = str(tmp_path / "missing.yaml")

    first = cli("demo", "--sweep", missing, "--port", str(_free_port()))
    second = cli("demo", "--sweep", missing, "--port", str(_free_port()))
    runs = cli("train", "runs", "--user", "demo")

    assert first.code == second.code == 0, first.err
    run_id = re.search(r"/ui/training/runs/([0-9a-f-]{36})", first.out)
    assert run_id is not None, first.out
    assert f"/ui/training/runs/{run_id[1]}" in second.out  # kept, not trained again
    assert runs.out.count("ticket triage on tiny-test") == 1, runs.out
    shown = cli("train", "show", run_id[1], "--user", "demo")
    assert "step 12" in shown.out
    assert "checkpoint demo (adapter, step 12)" in shown.out
    metrics = cli("train", "metrics", run_id[1], "--user", "demo", "--json")
    losses = [step["loss"] for step in json.loads(metrics.out)]
    assert len(losses) == 12
    assert losses[-1] < losses[0]
