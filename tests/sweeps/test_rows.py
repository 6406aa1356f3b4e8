"""A stored sweep's dataset packed for execution reads as the rows it was given."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.rows import PackedRows
from promptlooper.sweeps.spec import parse_spec, parse_stored_spec

ROWS = [
    {"input": "héllo", "expected": "hi", "n": 3, "score": 0.1, "tags": ["a", None], "ok": True},
    {"input": "", "expected": "bye", "nested": {"deep": [1.5, {"x": "y"}]}},
    {"input": "third", "expected": "3"},
]

DOCUMENT = {
    "name": "packed",
    "parameter_space": {"model": ["mock:small"], "prompt": ["Say: {{ input }}"]},
    "dataset": {"rows": ROWS},
    "scorers": [{"name": "correct", "type": "icontains"}],
}


def test_packed_rows_read_back_as_given_by_index_slice_and_iteration() -> None:
    packed = PackedRows(ROWS)

    assert len(packed) == 3
    assert list(packed) == ROWS
    assert [packed[i] for i in range(3)] == ROWS
    assert packed[-1] == ROWS[-1]
    assert packed[1:] == ROWS[1:]
    with pytest.raises(IndexError):
        packed[3]


def test_each_read_is_a_fresh_row_a_run_may_change() -> None:
    packed = PackedRows(ROWS)

    packed[0]["input"] = "changed"

    assert packed[0] == ROWS[0]


def test_a_stored_sweep_executes_with_its_rows_packed_and_plans_as_before() -> None:
    stored = parse_stored_spec(DOCUMENT)
    plain = parse_spec(DOCUMENT)

    assert isinstance(stored.dataset.rows, PackedRows)
    packed, listed = compile_plan(stored), compile_plan(plain)
    assert list(packed.rows) == list(listed.rows) == ROWS
    assert packed.total_runs == listed.total_runs == 3
    config = packed.configs[0]
    assert packed.run_config(config, packed.rows[1]) == listed.run_config(config, listed.rows[1])


class CountedRows(PackedRows):
    """Packed rows that count how many rows were decoded."""

    __slots__ = ("decoded",)

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        super().__init__(rows)
        self.decoded = 0

    def __getitem__(self, index: Any) -> Any:
        self.decoded += 1
        return super().__getitem__(index)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for row in super().__iter__():
            self.decoded += 1
            yield row


def test_packed_rows_are_taken_as_they_are_without_decoding_a_row() -> None:
    rows = CountedRows(ROWS)

    spec = parse_spec({**DOCUMENT, "dataset": {"rows": rows}})

    assert spec.dataset.rows is rows
    assert rows.decoded == 0


def test_an_integer_beyond_64_bits_reads_back_exact() -> None:
    rows = [{"input": "a", "id": 2**70}, {"input": "b", "id": -(2**64)}]

    assert list(PackedRows(rows)) == rows


def test_rows_read_once_switch_to_json_from_the_first_integer_beyond_64_bits() -> None:
    rows = [{"input": "a", "score": 0.1}, {"input": "b", "id": 2**70}, {"input": "c"}]

    packed = PackedRows(iter(rows))

    assert list(packed) == rows
    assert packed[1]["id"] == 2**70
