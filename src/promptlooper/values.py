"""What both databases store alike, and where a value holds something they do not.

PostgreSQL stores NUL (U+0000) in neither text nor JSON, and no UTF-8 encoder accepts a lone
surrogate (U+D800 to U+DFFF, which JSON's ``\\ud800`` escapes produce), so SQLite's driver
fails on it too; JSONB refuses NaN and infinity (which the JSON and YAML parsers here read:
``NaN``, ``1e999``, ``.inf``), and the JSON serialiser gives up on values nested hundreds of
levels deep. What users send is refused when it holds any of these (``RequestBody`` checks
every request body and sweep file); what a model answers is data, kept with the text replaced.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_search = _UNSTORABLE.search
REPLACEMENT = "\ufffd"
MAX_DEPTH = 64
"""How deeply lists and objects may nest inside one field of a request body."""
MAX_AMOUNT = 1e15
"""The largest magnitude of a measured number users send (an event's value, a call's cost or
latency): any amount in any currency's smallest unit, yet summed per unit, squared and summed
again over millions of units (for a variance), it stays far inside a float's range, so no
running total or statistic overflows to infinity."""

NUL_IN_TEXT = "Text must not contain the NUL character (\\u0000)"

PROBLEMS = {
    "string_nul": NUL_IN_TEXT,
    "string_surrogate": "Text must not contain a lone surrogate (\\ud800 to \\udfff): "
    "a character outside the Basic Multilingual Plane is a pair of them",
    "finite_number": "Input should be a finite number",
    "too_deep": f"Lists and objects should nest at most {MAX_DEPTH} levels deep",
}
"""Each kind of problem (a pydantic error type) and the message that explains it."""

Location = tuple[str | int, ...]


@dataclass(frozen=True, slots=True)
class Problem:
    loc: Location
    kind: str

    @property
    def message(self) -> str:
        return PROBLEMS[self.kind]


def storable(text: str) -> str:
    """``text`` with each character no database here can store replaced by U+FFFD (in Python
    a string holds code points, so any surrogate in it is a lone one)."""
    return _UNSTORABLE.sub(REPLACEMENT, text)


def find_problem(fields: Mapping[str, Any], skip: type | tuple[type, ...] = ()) -> Problem | None:
    """The first place in ``fields`` (a body's fields, by name) that no database here stores
    alike, or None. Models of the ``skip`` types inside are not entered: they check
    themselves."""
    found = _find(fields, 0, skip)
    if found is None:
        return None
    reversed_loc, kind = found
    return Problem(tuple(reversed(reversed_loc)), kind)


def _text_problem(text: str) -> str | None:
    match = _search(text)
    if match is None:
        return None
    return "string_nul" if match.group() == "\x00" else "string_surrogate"


def _find(value: Any, depth: int, skip: type | tuple[type, ...]) -> tuple[list[Any], str] | None:
    """Depth first over a container; the location comes back reversed (built only when
    something is found). Scalars are judged in the loop: a sweep's dataset may hold a few
    hundred thousand of them."""
    if isinstance(value, Mapping):
        items: Any = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    elif isinstance(value, BaseModel) and not isinstance(value, skip):
        items = {**value.__dict__, **(value.model_extra or {})}.items()
    else:
        return None
    if depth > MAX_DEPTH:
        return [], "too_deep"
    for key, item in items:
        if type(key) is str and _search(key) is not None:
            return [key], _text_problem(key) or ""
        kind = type(item)
        if kind is str:
            if _search(item) is not None:
                return [key], _text_problem(item) or ""
        elif kind is float:
            if not math.isfinite(item):
                return [key], "finite_number"
        elif kind is not int and kind is not bool and item is not None:
            found = _find(item, depth + 1, skip)
            if found is not None:
                found[0].append(key)
                return found
    return None
