"""Fixtures for CLI tests."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest

from promptlooper.cli.main import main
from tests.cli.inprocess import Invoke, Outcome


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> Invoke:
    """``cli("agent", "list")`` as ``promptlooper agent list`` on a fresh, migrated SQLite
    database; returns the exit code and what went to stdout and stderr."""
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "data"))
    for name in ("API_KEY", "REDIS_URL"):
        monkeypatch.delenv(name, raising=False)

    def invoke(*args: str) -> Outcome:
        monkeypatch.setattr(sys, "argv", ["promptlooper", *args])
        capsys.readouterr()
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            gc.unfreeze()  # a command freezes its process's heap; not the test runner's
        out, err = capsys.readouterr()
        return Outcome(code, out, err)

    assert invoke("db", "upgrade").code == 0
    return invoke
