"""Sweep files: YAML/JSON, prompt files, CSV/JSONL/JSON datasets, both weight forms."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from promptlooper.errors import Invalid
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.rows import PackedRows
from promptlooper.sweeps.spec import load_sweep_file, parse_spec, stored_document
from tests.fakes.certificates import self_signed

SWEEP = """
name: files
parameter_space:
  model: mock:small
  prompt:
    - {file: prompts/a.j2}
    - "Inline: {{ input }}"
dataset: {path: DATA}
scorers:
  - {name: accuracy, type: exact_match}
  - {name: brevity, type: length, max: 10}
scoring_config: {weights: {accuracy: 0.7, brevity: 0.3}}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "a.j2").write_text("From a file: {{ input }} ({{ customer }})\n")
    (tmp_path / "rows.csv").write_text("input,expected,customer\nhello,hi,ACME\nbye,ciao,Initech\n")
    (tmp_path / "rows.jsonl").write_text(
        '{"input": "hello", "expected": "hi", "customer": "ACME"}\n\n'
        '{"input": "bye", "expected": "ciao", "customer": "Initech"}\n'
    )
    (tmp_path / "rows.json").write_text(
        json.dumps({"rows": [{"input": "hello", "expected": "hi", "customer": "ACME"}]})
    )
    return tmp_path


@pytest.mark.parametrize(("data", "rows"), [("rows.csv", 2), ("rows.jsonl", 2), ("rows.json", 1)])
def test_files_are_inlined_and_the_plan_compiles(folder: Path, data: str, rows: int):
    path = folder / "sweep.yaml"
    path.write_text(SWEEP.replace("DATA", data))

    document = load_sweep_file(path)
    plan = compile_plan(parse_spec(document))

    assert document["parameter_space"]["prompt"][0] == "From a file: {{ input }} ({{ customer }})\n"
    assert document["dataset"] == {"rows": document["dataset"]["rows"]}
    assert document["dataset"]["rows"][0] == {
        "input": "hello",
        "expected": "hi",
        "customer": "ACME",
    }
    assert plan.total_runs == 2 * rows
    assert plan.weights == {"accuracy": 0.7, "brevity": 0.3}
    assert plan.run_config(plan.configs[0], plan.rows[0])["params"] == {}


def test_a_jsonl_dataset_is_packed_as_read_and_stored_as_the_same_rows_inline(folder: Path):
    rows = [
        {"input": "hello", "expected": "hi", "n": 2**70, "nested": {"x": [1.5, None, True]}},
        {"input": "bye", "expected": "ciao", "score": 0.25},
    ]
    (folder / "rows.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
    path = folder / "sweep.yaml"
    path.write_text(SWEEP.replace("DATA", "rows.jsonl"))

    spec = parse_spec(load_sweep_file(path))
    inline = parse_spec({**load_sweep_file(path), "dataset": {"rows": rows}})

    assert isinstance(spec.dataset.rows, PackedRows)
    assert stored_document(spec) == stored_document(inline)
    assert stored_document(spec)["dataset"]["rows"][0]["n"] == 2**70


def test_json_sweep_files_work_too(folder: Path):
    path = folder / "sweep.json"
    path.write_text(
        json.dumps(
            {
                "name": "json",
                "parameter_space": {"model": ["mock:a"], "prompt": ["{{ input }}"]},
                "dataset": {"rows": [{"input": "x"}]},
            }
        )
    )
    assert compile_plan(parse_spec(load_sweep_file(path))).total_runs == 1


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("input\n", "the dataset has no rows"),
        ('{"input": "ok"}\nnot json\n', "rows.jsonl line 2"),
        ('{"input": "ok"}\n["a list"]\n', "every row must be an object"),
        ("\n", "the dataset has no rows"),
        ('{"input": "ok"}\n{"score": NaN}\n', "rows.jsonl line 2: NaN is not a finite number"),
    ],
)
def test_bad_dataset_files_name_the_problem(folder: Path, content: str, message: str):
    suffix = ".csv" if content.startswith("input") else ".jsonl"
    (folder / f"rows{suffix}").write_text(content)
    path = folder / "sweep.yaml"
    path.write_text(SWEEP.replace("DATA", f"rows{suffix}"))
    with pytest.raises(Invalid, match=message):
        parse_spec(load_sweep_file(path))


def test_unsupported_dataset_format(folder: Path):
    (folder / "rows.xlsx").write_text("")
    path = folder / "sweep.yaml"
    path.write_text(SWEEP.replace("DATA", "rows.xlsx"))
    with pytest.raises(Invalid, match=r"use a \.csv, \.jsonl or \.json file"):
        load_sweep_file(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("name: x\nparameter_space: {model: [mock:a}\n", r"sweep.yaml line 2 column \d+: not"),
        ("- just\n- a list\n", "a sweep file must be a mapping"),
    ],
)
def test_a_broken_sweep_file_is_one_error_with_its_place(folder: Path, content: str, message: str):
    path = folder / "sweep.yaml"
    path.write_text(content)
    with pytest.raises(Invalid, match=message):
        load_sweep_file(path)


def test_a_providers_ca_bundle_file_is_read_relative_to_the_sweep_file(folder: Path):
    certificate = self_signed()
    (folder / "certs").mkdir()
    (folder / "certs" / "ca.pem").write_text(certificate.pem)
    path = folder / "sweep.yaml"
    path.write_text(
        SWEEP.replace("DATA", "rows.csv")
        + "providers:\n  vllm: {type: openai, base_url: 'https://127.0.0.1/v1',"
        " ca_bundle: {file: certs/ca.pem}}\n"
    )

    document = load_sweep_file(path)
    plan = compile_plan(parse_spec(document))

    assert document["providers"]["vllm"]["ca_bundle"] == certificate.pem
    assert plan.providers["vllm"].ca_bundle == certificate.pem


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        ("{file: missing.pem}", "providers.vllm.ca_bundle.file"),
        ("{file: rows.csv}", "providers.vllm.ca_bundle: not a PEM certificate"),
        ("''", "providers.vllm.ca_bundle: not a PEM certificate bundle: it is empty"),
    ],
)
def test_a_ca_bundle_that_is_not_certificates_names_the_field(
    folder: Path, bundle: str, message: str
):
    path = folder / "sweep.yaml"
    path.write_text(
        SWEEP.replace("DATA", "rows.csv")
        + f"providers:\n  vllm: {{type: openai, ca_bundle: {bundle}}}\n"
    )
    with pytest.raises(Invalid, match=message):
        parse_spec(load_sweep_file(path))
