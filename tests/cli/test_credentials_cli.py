"""``promptlooper credential``, sweeps on a workstation, and a server that refuses to start
when it would offer its own settings to sweeps."""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.cli.inprocess import Invoke
from tests.cli.test_cli import CLI, _env
from tests.deployed import ThreadedApp, free_port
from tests.fakes.openai_server import FakeOpenAI

SECRET = "sk-cli-0123456789abcdef"


@pytest.fixture
def fake_openai() -> Iterator[tuple[FakeOpenAI, str]]:
    fake = FakeOpenAI()
    with ThreadedApp(fake.app()) as served:
        yield fake, f"{served.origin}/v1"


def set_secret(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, secret: str, *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "stdin", io.StringIO(secret + "\n"))
    return cli("credential", "set", *args, "--secret-stdin")


def sweep_file(tmp_path: Path, base_url: str, **provider: str) -> Path:
    path = tmp_path / "sweep.yaml"
    document = {
        "name": "cli-keys",
        "parameter_space": {"model": ["openai:small"], "prompt": ["Hi {{ input }} reply:ok"]},
        "dataset": {"rows": [{"input": "one"}, {"input": "two"}]},
        "providers": {"openai": {"base_url": base_url, **provider}},
        "cache": False,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def test_set_list_replace_and_delete_a_credential(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    stored = set_secret(cli, monkeypatch, SECRET, "team", "--provider", "openai", "--project", "p")
    listed = cli("credential", "list", "--project", "p")
    replaced = set_secret(
        cli, monkeypatch, "sk-rotated", "team", "--provider", "anthropic", "--project", "p"
    )
    relisted = cli("credential", "list", "--project", "p")
    deleted = cli("credential", "delete", "team", "--project", "p")
    empty = cli("credential", "list", "--project", "p")

    assert stored.code == 0, stored.err
    assert stored.out == "stored credential team (openai)\n"
    assert listed.code == 0
    assert "team" in listed.out
    assert "openai" in listed.out
    assert "system:bootstrap-admin" in listed.out  # who created it
    assert replaced.out == "replaced credential team (anthropic)\n"
    assert "anthropic" in relisted.out
    assert deleted.out == "deleted credential team\n"
    assert "team" not in empty.out
    for outcome in (stored, listed, replaced, relisted, deleted, empty):
        assert SECRET not in outcome.out + outcome.err
        assert "sk-rotated" not in outcome.out + outcome.err
    database = (tmp_path / "cli.db").read_bytes()
    assert SECRET.encode() not in database
    assert b"sk-rotated" not in database


@pytest.mark.parametrize(
    ("args", "secret", "message"),
    [
        (("k", "--provider", "mock"), SECRET, "error: --provider: must be one of"),
        (("k", "--provider", "openai"), "", "error: secret: must be 1 to 4096"),
        (("k", "--provider", "openai"), "sk with space", "error: secret: must be"),
        (
            ("bad/name", "--provider", "openai"),
            SECRET,
            "error: NAME: must start with a letter or digit, then letters, digits, _ . or - only",
        ),
    ],
)
def test_bad_credentials_are_one_line_errors(
    cli: Invoke, monkeypatch: pytest.MonkeyPatch, args: tuple[str, ...], secret: str, message: str
):
    outcome = set_secret(cli, monkeypatch, secret, *args)

    assert outcome.code == 2
    assert outcome.err.startswith(message), outcome.err
    assert outcome.err.count("\n") == 1
    assert secret not in outcome.err or not secret


def test_reading_a_missing_project_creates_nothing(cli: Invoke):
    listed = cli("credential", "list", "--project", "typo")
    deleted = cli("credential", "delete", "k", "--project", "typo")
    projects = cli("sweep", "list")

    assert (listed.code, listed.err) == (2, "error: No project named 'typo'\n")
    assert (deleted.code, deleted.err) == (2, "error: No project named 'typo'\n")
    assert projects.code == 0


def test_a_cli_sweep_sends_the_projects_credential(
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_openai: tuple[FakeOpenAI, str],
):
    fake, base_url = fake_openai
    set_secret(cli, monkeypatch, SECRET, "team", "--provider", "openai", "--project", "p")

    ran = cli(
        "sweep", "run", str(sweep_file(tmp_path, base_url, credential="team")), "--project", "p"
    )
    elsewhere = cli(
        "sweep", "run", str(sweep_file(tmp_path, base_url, credential="team")), "--project", "q"
    )

    assert ran.code == 0, ran.err
    assert {h["Authorization"] for h in fake.headers} == {f"Bearer {SECRET}"}
    assert SECRET not in ran.out + ran.err
    assert elsewhere.code == 2
    assert elsewhere.err == (
        "error: providers.openai.credential: this project has no credential named 'team'\n"
    )


def test_a_cli_sweep_uses_the_users_own_environment(
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_openai: tuple[FakeOpenAI, str],
):
    fake, base_url = fake_openai
    monkeypatch.setenv("MY_KEY", "sk-my-own")
    monkeypatch.delenv("MY_UNSET_KEY", raising=False)

    ran = cli("sweep", "run", str(sweep_file(tmp_path, base_url, api_key_env="MY_KEY")))
    unset = cli("sweep", "run", str(sweep_file(tmp_path, base_url, api_key_env="MY_UNSET_KEY")))
    metadata = cli("sweep", "run", str(sweep_file(tmp_path, "http://169.254.169.254/v1")))

    assert ran.code == 0, ran.err
    assert {h["Authorization"] for h in fake.headers} == {"Bearer sk-my-own"}
    assert unset.err == (
        "error: providers.openai.api_key_env: the environment variable MY_UNSET_KEY is not set\n"
    )
    assert metadata.code == 2
    assert metadata.err == (
        "error: providers.openai.base_url: 169.254.169.254 is a cloud metadata address; "
        "provider calls never go there\n"
    )


def test_a_key_in_the_working_directorys_dotenv_reaches_a_cli_sweep(
    cli: Invoke,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_openai: tuple[FakeOpenAI, str],
):
    fake, base_url = fake_openai
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("OPENAI_API_KEY=sk-from-dotenv\nOTHER_KEY=sk-file\n")
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OTHER_KEY", "sk-environment")

    from_file = cli("sweep", "run", str(sweep_file(tmp_path, base_url)))
    seen_first = {h["Authorization"] for h in fake.headers}
    overridden = cli("sweep", "run", str(sweep_file(tmp_path, base_url, api_key_env="OTHER_KEY")))

    assert (from_file.code, overridden.code) == (0, 0), from_file.err + overridden.err
    assert seen_first == {"Bearer sk-from-dotenv"}
    assert {h["Authorization"] for h in fake.headers} - seen_first == {"Bearer sk-environment"}


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        (
            "PROVIDER_KEY_ENVS",
            "OPENAI_API_KEY,API_KEY",
            "error: invalid setting PROVIDER_KEY_ENVS: API_KEY is a PromptLooper "
            "setting; sweeps may never use it\n",
        ),
        (
            "PROVIDER_KEY_ENVS",
            "JWT_SECRET",
            "error: invalid setting PROVIDER_KEY_ENVS: JWT_SECRET is a PromptLooper "
            "setting; sweeps may never use it\n",
        ),
        (
            "PROVIDER_ALLOWED_HOSTS",
            "https://api.openai.com",
            "error: invalid setting PROVIDER_ALLOWED_HOSTS: 'https://api.openai.com' "
            "is not a host name, *.domain, an address, a CIDR range or *\n",
        ),
    ],
)
def test_serve_refuses_to_start_offering_its_own_settings(
    tmp_path: Path, setting: str, value: str, message: str
):
    env = {**_env(tmp_path, None), setting: value}

    result = subprocess.run(
        [*CLI, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 2
    assert result.stderr == message
    assert result.stdout == ""
