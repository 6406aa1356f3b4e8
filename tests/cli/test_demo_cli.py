"""``promptlooper demo`` up to the point where it starts serving."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlooper.cli import server
from tests.cli.inprocess import Invoke


def test_a_demo_without_its_sweep_file_sets_up_the_rest_and_says_so(
    cli: Invoke, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    served: list[int] = []
    monkeypatch.setattr(server, "_run_server", lambda _settings, _host, port: served.append(port))

    outcome = cli("demo", "--sweep", str(tmp_path / "missing.yaml"), "--port", "8123")

    assert outcome.code == 0, outcome.err
    assert "skipping the example sweep" in outcome.out
    assert "experiment:  none run" in outcome.out
    assert "/api/experiments/None" not in outcome.out
    assert "admin user:  demo" in outcome.out
    assert served == [8123]
