"""``promptlooper train`` as a user runs it: models, an SFT loop, and reading the run back."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.inprocess import Invoke

DATA = [
    {
        "messages": [
            {"role": "user", "content": "Classify: charged twice"},
            {"role": "assistant", "content": "billing"},
        ]
    },
    {
        "messages": [
            {"role": "user", "content": "Classify: app crashes"},
            {"role": "assistant", "content": "technical"},
        ]
    },
    {"text": "Classify: refund please -> billing"},
]


def test_models_are_listed(cli: Invoke) -> None:
    outcome = cli("train", "models")
    assert outcome.code == 0
    assert "tiny-test" in outcome.out
    assert "smollm2-135m-instruct" in outcome.out


def test_sft_trains_saves_and_reports(cli: Invoke, tmp_path: Path) -> None:
    data = tmp_path / "tickets.jsonl"
    data.write_text("\n".join(json.dumps(row) for row in DATA) + "\n")
    outcome = cli(
        "train",
        "sft",
        "--model",
        "tiny-test",
        "--data",
        str(data),
        "--epochs",
        "4",
        "--batch-size",
        "2",
        "--lr",
        "2e-2",
        "--merged",
    )
    assert outcome.code == 0, outcome.err
    first, last = map(
        float, re.search(r"loss ([\d.]+) -> ([\d.]+) over 8 steps", outcome.out).groups()
    )
    assert last < first
    assert "adapter saved as final" in outcome.out
    assert "merged model saved as merged-8" in outcome.out
    assert "8/8 steps" in outcome.err  # the progress bar

    run_id = re.search(r"run ([0-9a-f-]{36}):", outcome.out).group(1)
    assert run_id in cli("train", "runs").out
    shown = cli("train", "show", run_id)
    assert "step 8" in shown.out
    assert "checkpoint final (adapter, step 8)" in shown.out
    steps = json.loads(cli("train", "metrics", run_id, "--json").out)  # one document
    assert [s["step"] for s in steps] == list(range(1, 9))
    assert set(steps[0]) == {"step", "loss", "tokens", "grad_norm", "learning_rate"}
    table = cli("train", "metrics", run_id)
    assert f"loss {first:.4f} -> {last:.4f} over 8 steps" in table.out


def test_bad_input_is_one_line_and_exit_2(cli: Invoke, tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text(json.dumps(DATA[0]) + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "fine"}\n{"txt": "typo"}\n')
    broken = tmp_path / "broken.jsonl"
    broken.write_text("{not json\n")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    cases = [
        (("train", "sft", "--model", "gpt-9", "--data", str(data)), "Unsupported model 'gpt-9'"),
        (("train", "sft", "--model", "tiny-test", "--data", str(bad)), "bad.jsonl line 2: txt"),
        (("train", "sft", "--model", "tiny-test", "--data", str(broken)), "line 1: not JSON"),
        (
            ("train", "sft", "--model", "tiny-test", "--data", str(binary)),
            "binary.jsonl is not UTF-8 text (byte 0)",
        ),
        (
            ("train", "sft", "--model", "tiny-test", "--data", str(tmp_path / "no.jsonl")),
            "cannot read",
        ),
        (("train", "show", "not-an-id"), "is not a run id"),
        (("train", "show", "00000000-0000-0000-0000-000000000001"), "Training run not found"),
    ]
    for args, message in cases:
        outcome = cli(*args)
        assert outcome.code == 2, (args, outcome)
        assert message in outcome.err, (args, outcome.err)
        assert len(outcome.err.strip().splitlines()) == 1
    options = [
        ("--lr", "inf", "Input should be a finite number"),
        ("--lr", "11", "Input should be less than or equal to 10"),
        ("--rank", "5000", "Input should be less than or equal to 1024"),
        # not after training
        (
            "--save",
            "../elsewhere",
            "must start with a letter or digit, then letters, digits, . _ or - only "
            "(100 characters at most)",
        ),
    ]
    for option, value, message in options:
        outcome = cli("train", "sft", "--model", "tiny-test", "--data", str(data), option, value)
        assert outcome.code == 2  # a usage error, before any run is created
        assert f"Invalid value for '{option}': {message}" in outcome.err
    assert not re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", cli("train", "runs").out)  # no run made


def test_a_bad_example_is_named_by_its_line(cli: Invoke, tmp_path: Path) -> None:
    """The worker finds what only the tokenizer can tell (no assistant turn here); the error
    names the file's line, not the index within its batch."""
    no_answer = {"messages": [{"role": "user", "content": "no answer yet"}]}
    late = tmp_path / "late.jsonl"
    late.write_text("\n".join(json.dumps(row) for row in [DATA[2], DATA[0], no_answer]) + "\n")
    outcome = cli("train", "sft", "--model", "tiny-test", "--data", str(late), "--batch-size", "2")
    assert outcome.code == 2
    error = outcome.err.strip().splitlines()[-1]
    assert "late.jsonl line 3: messages need an assistant turn to train on" in error
    kept = re.search(r"run ([0-9a-f-]{36}) kept at step 1", error).group(1)
    assert "step 1" in cli("train", "show", kept).out  # the step made before stays

    first = tmp_path / "first.jsonl"
    first.write_text(json.dumps(no_answer) + "\n")
    outcome = cli("train", "sft", "--model", "tiny-test", "--data", str(first))
    assert outcome.code == 2
    error = outcome.err.strip().splitlines()[-1]
    assert "first.jsonl line 1: messages need an assistant turn" in error
    deleted = re.search(r"nothing was trained: run ([0-9a-f-]{36}) deleted", error).group(1)
    assert deleted not in cli("train", "runs").out
    assert kept in cli("train", "runs").out
