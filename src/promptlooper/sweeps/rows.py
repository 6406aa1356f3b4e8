"""A dataset held packed while its sweep executes: every row's JSON in one buffer.

An executing sweep reads its rows by index, one run at a time, for as long as it runs. As Python
dicts, 83,334 rows of two short fields take ~36 MB spread over the interpreter's small-object
arenas, and once the sweep ends those arenas stay with the process, half empty, under the
leaderboard that comes next. Packed, the same rows are ~4 MB in two large blocks that go back
to the system when they are freed. A row is decoded when a run asks for it (a few
microseconds with orjson), as a fresh dict the run may change without touching the others.

Pure Python and orjson: no I/O, no web or database imports.
"""

from __future__ import annotations

import json
from array import array
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, overload

import orjson


class PackedRows(Sequence[dict[str, Any]]):
    """Dataset rows (JSON objects, as a stored sweep holds them) packed one after another;
    indexing decodes one. Rows go in as they are, read once from ``rows`` (a file's rows may
    arrive one at a time, so no list of them is ever built): they were validated by whoever
    gives them. orjson writes and reads them, unless a row holds an integer beyond 64 bits,
    which orjson refuses to write and would read back as a float: from that row on ``json``
    writes them, and every row is read with ``json``, which reads what orjson wrote the same
    and keeps such an integer exact."""

    __slots__ = ("_data", "_ends", "_loads")

    def __init__(self, rows: Iterable[dict[str, Any]]) -> None:
        data = bytearray()
        ends = array("Q")
        dumps: Callable[[Any], bytes] = orjson.dumps
        self._loads: Callable[[memoryview], Any] = orjson.loads
        for row in rows:
            try:
                data += dumps(row)
            except TypeError:
                dumps, self._loads = _json_dumps, _json_loads
                data += dumps(row)
            ends.append(len(data))
        self._data = memoryview(data)
        self._ends = ends

    def __len__(self) -> int:
        return len(self._ends)

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...

    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...

    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError("row index out of range")
        start = self._ends[index - 1] if index else 0
        return self._loads(self._data[start : self._ends[index]])

    def __iter__(self) -> Iterator[dict[str, Any]]:
        start = 0
        for end in self._ends:
            yield self._loads(self._data[start:end])
            start = end

    def __repr__(self) -> str:
        return f"<PackedRows: {len(self)} rows, {len(self._data)} bytes>"


def _json_dumps(row: Any) -> bytes:
    return json.dumps(row, separators=(",", ":")).encode()


def _json_loads(data: memoryview) -> Any:
    return json.loads(data.tobytes())
