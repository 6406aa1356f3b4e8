"""``promptlooper agent`` and ``promptlooper variant`` as a user runs them, on both databases."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from tests.cli.inprocess import Invoke
from tests.cli.test_sweep_cli import env_for, run

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    return env_for(tmp_path, db_url)


def ok(env: dict[str, str], *args: str) -> str:
    result = run(env, *args)
    assert result.returncode == 0, result.stderr + result.stdout
    return result.stdout


def test_agent_and_variant_lifecycle_from_the_terminal(env: dict[str, str], tmp_path: Path):
    prompt = tmp_path / "prompt.j2"
    prompt.write_text("Extract facts from: {{ input }}")
    template = f"user_prompt_template=@{prompt}"
    created = ok(
        env,
        "agent", "create", "Fact Extractor", "--project", "cli",
        "--model", "mock:small", "--set", "temperature=0.2", "--set", template,
    )  # fmt: skip
    assert "created agent fact-extractor" in created

    ok(env, "variant", "create", "fact-extractor", "Hot", "-p", "cli", "--set", "temperature=0.9")
    ok(env, "variant", "clone", "fact-extractor", "Hot Large", "--from", "hot", "-p", "cli",
       "--model", "mock:large")  # fmt: skip
    assert "serves variant hot-large" in ok(
        env, "variant", "activate", "fact-extractor", "hot-large", "-p", "cli", "-r", "bigger"
    )

    resolved = json.loads(ok(env, "agent", "config", "fact-extractor", "-p", "cli", "--json"))
    assert resolved["source"] == "variant"
    assert resolved["variant"] == "hot-large"
    assert resolved["config"]["temperature"] == 0.9  # cloned from hot
    assert resolved["config"]["model_name"] == "large"
    assert resolved["config"]["user_prompt_template"] == "Extract facts from: {{ input }}"
    assert resolved["provenance"]["user_prompt_template"] == "agent"

    unchanged = ok(
        env, "agent", "update", "fact-extractor", "-p", "cli", "--set", "temperature=0.2"
    )
    assert "config unchanged" in unchanged
    assert "now revision 2" in ok(
        env, "agent", "update", "fact-extractor", "-p", "cli", "--set", "max_tokens=64"
    )

    revisions = ok(env, "agent", "revisions", "fact-extractor", "-p", "cli")
    first_revision = UUID.findall(revisions)[0]
    assert "is at revision 3" in ok(
        env, "agent", "rollback", "fact-extractor", first_revision, "-p", "cli"
    )
    after = json.loads(ok(env, "agent", "config", "fact-extractor", "-p", "cli", "--json"))
    assert after["config"]["max_tokens"] is None  # back to revision 1's base
    assert "hot-large" in ok(env, "variant", "list", "fact-extractor", "-p", "cli")

    activations = ok(env, "agent", "activations", "fact-extractor", "-p", "cli")
    assert "bigger" in activations
    assert "(was hot-large)" in ok(env, "variant", "deactivate", "fact-extractor", "-p", "cli")
    listed = ok(env, "agent", "list", "-p", "cli")
    assert "fact-extractor" in listed
    assert "mock:small" in listed


def test_agent_sweep_runs_around_the_agent_config(env: dict[str, str], tmp_path: Path):
    ok(env, "agent", "create", "Triage", "-p", "cli", "--model", "mock:small",
       "--set", "user_prompt_template=Classify: {{ input }}", "--set", "max_retries=0")  # fmt: skip
    sweep = tmp_path / "around.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "parameter_space": {"temperature": [0.0, 0.7]},
                "dataset": {"rows": [{"input": "charged twice", "expected": "billing"}]},
                "scorers": [{"name": "acc", "type": "exact_match"}],
            }
        )
    )

    result = run(env, "agent", "sweep", "triage", str(sweep), "-p", "cli")

    assert result.returncode == 0, result.stderr
    assert "2 runs in" in result.stderr
    assert "Triage sweep: leaderboard" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["agent", "show", "nope", "-p", "cli"], "No project named 'cli'"),
        (["agent", "create", "X", "--model", "gpt4"], "--model: expected provider:model"),
        (
            ["agent", "create", "X", "--model", "mock:b", "--set", "oops"],
            "--set: expected field=value",
        ),
        (["agent", "create", "X", "--model", "mock:b", "--set", "temperature=9"], "temperature:"),
        (["agent", "create", "X", "--model", "opneai:b"], "model_provider: unknown provider"),
        (["agent", "create", "X", "--set", "bogus=1"], "bogus: Extra inputs are not permitted"),
        (
            ["agent", "create", "X", "--model", "mock:b", "--set", "slug=x"],
            "--set slug: not a config field; --help shows where it goes",
        ),
        (["agent", "create", "X"], "model_provider: an agent needs a model provider"),
        (["variant", "list", "missing"], "No agent with slug 'missing'"),
        (["agent", "rollback", "missing", "not-an-id"], "revision_id: not an id"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(cli: Invoke, args: list[str], message: str):
    assert cli("agent", "create", "Seed", "--model", "mock:m").code == 0  # "default" exists

    result = cli(*args)

    assert result.code == 2, result.out
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1


def test_variant_promote_takes_the_hash_the_leaderboard_prints(cli: Invoke, tmp_path: Path):
    cli("agent", "create", "Triage", "-p", "cli", "--model", "mock:small")
    sweep = tmp_path / "around.yaml"
    sweep.write_text(
        yaml.safe_dump(
            {
                "parameter_space": {
                    "temperature": [0.0, 0.7],
                    "prompt": ["Classify: {{ input }}"],
                },
                "dataset": {"rows": [{"input": "charged twice", "expected": "billing"}]},
                "scorers": [{"name": "acc", "type": "exact_match"}],
            }
        )
    )
    swept = cli("agent", "sweep", "triage", str(sweep), "-p", "cli")
    experiment_id = re.search(r"experiment ([0-9a-f-]{36})", swept.out + swept.err)[1]
    shown = re.findall(r"([0-9a-f]{8}) *│\n", swept.out)  # each row's last column

    promoted = cli("variant", "promote", "triage", experiment_id, "--config", shown[1], "-p", "cli")
    listed = cli("variant", "list", "triage", "-p", "cli")

    assert len(shown) == 2
    assert promoted.code == 0, promoted.err
    assert f"{shown[1]}" in listed.out


def test_a_project_of_another_user_is_named_with_the_option_that_reaches_it(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a long enough password\n"))
    assert cli("user", "create", "alice", "--password-stdin").code == 0
    alice = ("--user", "alice")
    created = cli("agent", "create", "Bot", "--model", "mock:small", "-p", "team", *alice)
    assert created.code == 0, created.err

    for command in (["agent", "list"], ["credential", "list"], ["cache", "stats"]):
        outcome = cli(*command, "--project", "team")
        assert (outcome.code, outcome.err) == (
            2,
            "error: No project named 'team' of system:bootstrap-admin; alice has one: "
            "add --user alice\n",
        ), command
    assert cli("agent", "list", "--project", "team", "--user", "alice").code == 0
