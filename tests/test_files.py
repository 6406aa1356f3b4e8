"""Every file a user points PromptLooper at fails the same way: one line naming it."""

from __future__ import annotations

from pathlib import Path

import pytest

from promptlooper.errors import Invalid
from promptlooper.files import read_text
from promptlooper.sweeps.spec import load_sweep_file


def test_text_is_read_as_utf8(tmp_path: Path) -> None:
    path = tmp_path / "prompt.j2"
    path.write_text("Classez : {{ input }} — merci", encoding="utf-8")
    assert read_text(path) == "Classez : {{ input }} — merci"


def test_a_binary_file_is_named_with_where_it_came_from(tmp_path: Path) -> None:
    path = tmp_path / "tickets.jsonl"
    path.write_bytes(b'{"input": "ok"}\n\xff\xfe')
    with pytest.raises(Invalid) as raised:
        read_text(path, "dataset.path")
    assert raised.value.message == f"dataset.path: {path} is not UTF-8 text (byte 16)"


def test_a_missing_file_says_why(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match=r"^cannot read .*nowhere\.yaml: No such file"):
        read_text(tmp_path / "nowhere.yaml")


def test_a_sweep_whose_template_file_is_binary_names_the_field(tmp_path: Path) -> None:
    (tmp_path / "careful.j2").write_bytes(b"\x89PNG\r\n")
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(
        "name: t\n"
        "parameter_space: {model: [mock:a], prompt: [{file: careful.j2}]}\n"
        "dataset: {rows: [{input: a}]}\n"
    )
    with pytest.raises(Invalid, match=r"^parameter_space\.prompt\[0\]\.file: .* is not UTF-8"):
        load_sweep_file(sweep)
