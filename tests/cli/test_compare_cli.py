"""The CI gate: ``sweep compare`` exits 1 on a significant regression beyond the margin and 0
on an improvement, saying why; ``sweep run`` fails when every run failed or the best score is
under ``--fail-under``. Bad input is a one-line error and exit code 2."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import yaml

from tests.cli.inprocess import Invoke

ID = re.compile(r"experiment ([0-9a-f-]{36})")
LABELS = [("was charged twice", "billing"), ("crashes on start", "bug"), ("password", "account")]


def sweep_file(tmp_path: Path, name: str, model: str, **changes) -> Path:
    doc = {
        "name": name,
        "parameter_space": {"model": [model], "prompt": ["Classify: {{ input }}. One word."]},
        "dataset": {
            "rows": [
                {"input": f"Ticket {i}: it {LABELS[i % 3][0]}", "expected": LABELS[i % 3][1]}
                for i in range(60)
            ]
        },
        "scorers": [{"name": "accuracy", "type": "exact_match", "ignore_case": True}],
        "providers": {
            "mock": {
                "models": {"small": {"accuracy": 0.5}, "large": {"accuracy": 0.95}},
                "knowledge": {"charged": "billing", "crash": "bug", "password": "account"},
            }
        },
        "concurrency": 16,
        **changes,
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def _run(cli: Invoke, path: Path, *extra: str) -> tuple[int, str, str]:
    outcome = cli("sweep", "run", str(path), *extra)
    found = ID.search(outcome.err)
    assert found is not None, outcome.err
    return outcome.code, found.group(1), outcome.err


def test_the_gate_fails_a_regression_and_passes_an_improvement(cli: Invoke, tmp_path: Path):
    _, good, _ = _run(cli, sweep_file(tmp_path, "baseline", "mock:large"))
    _, worse, _ = _run(cli, sweep_file(tmp_path, "candidate", "mock:small"))

    regression = cli("sweep", "compare", good, worse, "--margin", "0.05")
    improvement = cli("sweep", "compare", worse, good, "--margin", "0.05")
    tolerated = cli("sweep", "compare", good, worse, "--margin", "1")

    assert regression.code == 1, regression.err
    text = " ".join(regression.out.split())
    assert "FAIL: regression: the candidate scores -0." in text
    assert "worse by more than the margin 0.05" in text
    assert "worst rows first" in text
    assert improvement.code == 0, improvement.err
    assert "PASS: improvement: the candidate scores +0." in " ".join(improvement.out.split())
    assert tolerated.code == 0
    assert "PASS: no significant regression beyond the margin 1" in " ".join(tolerated.out.split())


def test_the_gate_refuses_bad_input_with_exit_code_2(cli: Invoke, tmp_path: Path):
    _, good, _ = _run(cli, sweep_file(tmp_path, "baseline", "mock:large"))
    shorter = sweep_file(tmp_path, "short", "mock:large")
    doc = yaml.safe_load(shorter.read_text())
    doc["dataset"]["rows"] = doc["dataset"]["rows"][:10]
    shorter.write_text(yaml.safe_dump(doc))
    _, other, _ = _run(cli, shorter)

    unknown = cli("sweep", "compare", good, str(uuid.uuid4()))
    malformed = cli("sweep", "compare", good, "not-an-id")
    margin = cli("sweep", "compare", good, good, "--margin", "-0.1")
    single = cli("sweep", "compare", good, good)
    different = cli("sweep", "compare", good, other)

    assert (unknown.code, unknown.err) == (2, "error: Experiment not found\n")
    assert malformed.code == 2
    assert margin.code == 2
    for bad in ("NaN", "-0.1", "1.5", "inf"):
        refused = cli("sweep", "compare", good, good, "--margin", bad)
        assert refused.code == 2, bad
        assert "margin must be a number between 0 and 1" in refused.err, refused.err
    assert (single.code, single.err.count("\n")) == (2, 1)
    assert "b: the experiment has one scored config" in single.err
    assert different.code == 2
    assert "candidate: its dataset differs from the baseline's" in different.err


def test_sweep_run_fails_under_a_score_and_when_every_run_failed(cli: Invoke, tmp_path: Path):
    path = sweep_file(tmp_path, "baseline", "mock:large")
    passed, _, _ = _run(cli, path, "--fail-under", "0.5")
    under, _, under_err = _run(cli, path, "--fail-under", "0.99")
    broken = sweep_file(
        tmp_path,
        "broken",
        "openai:nothing",
        providers={"openai": {"base_url": "http://127.0.0.1:9/v1", "max_retries": 0}},
    )
    failed, _, failed_err = _run(cli, broken)
    bad_bar = cli("sweep", "run", str(path), "--fail-under", "2")

    assert passed == 0
    assert under == 1
    assert "failed: the best score 0." in under_err
    assert "is under --fail-under 0.99" in under_err
    assert failed == 1
    assert "failed: every run failed (60)" in failed_err
    assert bad_bar.code == 2
