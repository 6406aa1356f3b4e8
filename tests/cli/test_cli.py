"""The real console script in a subprocess, against both databases."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from promptlooper import __version__, migrations
from tests.conftest import drop_database, fresh_database

CLI = [sys.executable, "-m", "promptlooper"]
EXAMPLE = Path(__file__).parents[2] / "examples" / "ticket-triage" / "sweep.yaml"
ID = re.compile(r"experiment ([0-9a-f-]{36})")


def _env(tmp_path: Path, db_url: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"API_KEY", "JWT_SECRET", "REDIS_URL"}}
    env["DATA_DIR"] = str(tmp_path / "data")
    if db_url is None:
        env.pop("DATABASE_URL", None)
    else:
        env["DATABASE_URL"] = db_url
    return env


def _run(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


def test_version():
    result = subprocess.run([*CLI, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == f"promptlooper {__version__}"


def test_user_and_key_commands(tmp_path: Path, db_url: str):
    env = _env(tmp_path, db_url)

    upgraded = _run(env, "db", "upgrade")
    created = _run(
        env, "user", "create", "alice", "--admin", "--password-stdin", stdin="long enough pw\n"
    )
    duplicate = _run(env, "user", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    short = _run(env, "user", "create", "bob", "--password-stdin", stdin="short\n")
    key = _run(env, "apikey", "create", "--user", "alice", "--name", "ci")
    missing = _run(env, "apikey", "create", "--user", "nobody")
    listed = _run(env, "apikey", "list", "--user", "alice")

    assert upgraded.returncode == 0, upgraded.stderr
    assert created.returncode == 0, created.stderr
    assert "created user alice (admin)" in created.stdout
    assert (duplicate.returncode, duplicate.stderr) == (
        2,
        "error: Username 'alice' is already taken\n",
    )
    assert short.returncode == 2
    assert short.stderr.startswith("error: password:")
    assert short.stderr.count("\n") == 1
    assert key.returncode == 0
    raw_key = key.stdout.strip()
    assert raw_key.startswith("pl_")
    assert "shown only once" in key.stderr
    assert (missing.returncode, missing.stderr) == (2, "error: No user named 'nobody'\n")
    assert raw_key[:12] in listed.stdout
    assert raw_key not in listed.stdout


async def test_a_cli_created_key_authenticates_against_the_api(
    tmp_path: Path, db_url: str, client: httpx.AsyncClient
):
    env = _env(tmp_path, db_url)
    _run(env, "user", "create", "alice", "--password-stdin", stdin="long enough pw\n")
    raw_key = _run(env, "apikey", "create", "--user", "alice").stdout.strip()

    me = await client.get("/api/auth/me", headers={"X-Api-Key": raw_key})

    assert me.status_code == 200
    assert me.json()["username"] == "alice"


def test_a_first_sweep_on_a_new_sqlite_database_creates_the_schema(tmp_path: Path):
    env = _env(tmp_path, f"sqlite:///{tmp_path / 'not' / 'yet' / 'there.db'}")

    first = _run(env, "sweep", "run", str(EXAMPLE))
    current = _run(env, "db", "current")

    assert first.returncode == 0, first.stderr
    assert f"created a new database: {tmp_path / 'not' / 'yet' / 'there.db'}" in first.stderr
    assert "ticket-triage: leaderboard" in first.stdout
    assert f"current: {migrations.HEAD}" in current.stdout


async def test_postgresql_keeps_the_explicit_upgrade(tmp_path: Path):
    url = await fresh_database("postgresql", tmp_path)
    try:
        refused = _run(_env(tmp_path, url), "user", "list")
    finally:
        await drop_database(url)

    assert (refused.returncode, refused.stderr) == (
        2,
        "error: the database schema is not up to date; run `promptlooper db upgrade` first\n",
    )


def test_an_older_sqlite_schema_is_not_upgraded_behind_the_users_back(tmp_path: Path):
    env = _env(tmp_path, None)
    _run(env, "db", "upgrade", "0001")

    refused = _run(env, "user", "list")

    assert refused.returncode == 2
    assert "run `promptlooper db upgrade` first" in refused.stderr


def test_unknown_revisions_are_one_line_errors(tmp_path: Path):
    env = _env(tmp_path, None)

    up = _run(env, "db", "upgrade", "9999")
    down = _run(env, "db", "downgrade", "nope")

    assert (up.returncode, up.stderr) == (
        2,
        "error: Can't locate revision identified by '9999' "
        f"(revisions run from base to {migrations.HEAD})\n",
    )
    assert down.returncode == 2
    assert down.stderr.count("\n") == 1
    assert "'nope'" in down.stderr


def test_a_file_that_cannot_be_written_is_named_not_blamed_on_the_database(tmp_path: Path):
    env = _env(tmp_path, None)
    _run(env, "db", "upgrade")
    experiment_id = ID.search(_run(env, "sweep", "run", str(EXAMPLE)).stderr)
    assert experiment_id is not None
    missing = tmp_path / "missing" / "x.json"

    result = _run(env, "export", experiment_id[1], "-o", str(missing))

    assert (result.returncode, result.stderr) == (
        2,
        f"error: cannot write {missing}: No such file or directory\n",
    )


def test_bad_settings_and_unreachable_databases_are_one_line_errors(tmp_path: Path):
    bad_scheme = _run(_env(tmp_path, "mysql://u@h/d"), "db", "upgrade")
    unreachable = _run(_env(tmp_path, "postgresql://nobody@127.0.0.1:1/x"), "db", "upgrade")
    bad_number = _run({**_env(tmp_path, None), "JWT_EXPIRE_MINUTES": "soon"}, "db", "current")
    (tmp_path / "a-file").touch()
    data_dir = tmp_path / "a-file" / "data"
    bad_folder = _run({**_env(tmp_path, None), "DATA_DIR": str(data_dir)}, "user", "list")

    for result in (bad_scheme, unreachable, bad_number, bad_folder):
        assert result.returncode == 2
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1
        assert "Traceback" not in result.stderr
    assert "DATABASE_URL" in bad_scheme.stderr
    assert "JWT_EXPIRE_MINUTES" in bad_number.stderr
    assert bad_folder.stderr == f"error: {data_dir}: Not a directory\n"


def test_mistyped_arguments_and_options_are_one_line_errors(tmp_path: Path):
    env = _env(tmp_path, None)

    bad_id = _run(env, "sweep", "show", "not-a-uuid")
    bad_option = _run(env, "sweep", "list", "--bogus")
    missing = _run(env, "sweep", "show")

    assert (bad_option.returncode, bad_option.stderr) == (
        2,
        "error: No such option: --bogus (Possible options: --user) "
        "(see 'promptlooper sweep list --help')\n",
    )
    for result in (bad_id, missing):
        assert result.returncode == 2
        assert result.stderr.startswith("error: ")
        assert result.stderr.count("\n") == 1
        assert result.stderr.endswith("(see 'promptlooper sweep show --help')\n")
    assert "'experiment_id'" in bad_id.stderr
    assert "Missing argument 'experiment_id'" in missing.stderr


def test_a_group_without_a_command_prints_its_help():
    result = subprocess.run(
        [*CLI, "sweep"], capture_output=True, text=True, timeout=60, env=os.environ
    )

    assert result.returncode == 2
    assert "Usage: promptlooper sweep [OPTIONS] COMMAND" in result.stdout
    assert result.stderr == ""


def test_downgrade_and_current(tmp_path: Path):
    env = _env(tmp_path, None)
    _run(env, "db", "upgrade")

    down = _run(env, "db", "downgrade", "base")
    current = _run(env, "db", "current")

    assert down.returncode == 0
    assert "current: none" in current.stdout


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.parametrize("migrate", [True, False])
def test_serve_upgrades_the_schema_unless_told_not_to(tmp_path: Path, migrate: bool):
    env = _env(tmp_path, None)
    port = _free_port()
    args = ["serve", "--port", str(port)] + ([] if migrate else ["--no-migrate"])
    server = subprocess.Popen(
        [*CLI, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        health = None
        for _ in range(100):
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/api/health", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        current = _run(env, "db", "current")
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0].decode()

    assert health is not None
    assert health.status_code == 200
    assert f"Listening on http://127.0.0.1:{port} (Ctrl+C to quit)" in output
    assert (f"current: {migrations.head_revision()}" in current.stdout) is migrate
