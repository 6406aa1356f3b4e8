"""User text (names, prompts, dataset fields, config values) printed by the CLI as written:
Rich markup and emoji codes in it are neither interpreted nor a crash."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

CLI = [sys.executable, "-m", "promptlooper"]
EXAMPLE = Path(__file__).parents[2] / "examples" / "ticket-triage" / "sweep.yaml"
TRICKY = "[/bold] :x: [red]"


def _run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def _tricky_sweep(tmp_path: Path) -> Path:
    doc = yaml.safe_load(EXAMPLE.read_text())
    doc["name"] = f"{TRICKY}triage"
    doc["parameter_space"] = {
        "model": ["mock:small"],
        "prompt": [
            f"{TRICKY}{{{{ input }}}}",
            "[bold]long prompt :x: with markup {{ input }}",
        ],
        "tone": [f"{TRICKY}"],
    }
    doc["dataset"] = {"rows": [{"input": f"{TRICKY} refund", "expected": "billing"}]}
    path = tmp_path / "tricky.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_markup_and_emoji_codes_in_user_text_print_literally(tmp_path: Path):
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "REDIS_URL"}}
    env |= {"DATA_DIR": str(tmp_path / "data"), "COLUMNS": "200"}
    env.pop("DATABASE_URL", None)
    _run(env, "db", "upgrade")

    swept = _run(env, "sweep", "run", str(_tricky_sweep(tmp_path)))
    listed = _run(env, "sweep", "list")
    created = _run(
        env,
        "agent",
        "create",
        f"{TRICKY}bot",
        "--slug",
        "bot",
        "-m",
        "mock:small",
        "-s",
        f"system_prompt={TRICKY}",
    )
    shown = _run(env, "agent", "show", "bot")
    agents = _run(env, "agent", "list")
    missing = _run(env, "agent", "show", TRICKY)

    for result in (swept, listed, created, shown, agents):
        assert result.returncode == 0, result.stderr
        assert "❌" not in result.stdout + result.stderr
    assert f"{TRICKY}triage: leaderboard" in swept.stdout
    assert f"{TRICKY}triage" in swept.stderr
    assert f"{TRICKY}{{{{ input }}}}" in swept.stdout
    assert "prompt #2: [bold]long prompt :x: with markup {{ input }}" in swept.stdout
    assert f"{TRICKY}triage" in listed.stdout
    assert f"{TRICKY}bot" in shown.stdout
    assert f"{TRICKY}bot" in agents.stdout
    assert TRICKY in shown.stdout.split("system_prompt", 1)[1]
    assert (missing.returncode, missing.stderr) == (
        2,
        f"error: No agent with slug '{TRICKY}' in this project\n",
    )
