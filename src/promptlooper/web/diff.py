"""Where two outputs differ, as pieces a template escapes and wraps: never HTML built here."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

_TOKENS = re.compile(r"\s+|\w+|[^\w\s]")
MAX_DIFF_CHARS = 20_000
"""Longer outputs are shown whole, without highlighting: difflib is quadratic at worst."""


@dataclass(frozen=True, slots=True)
class Piece:
    kind: Literal["same", "ins", "del"]
    text: str


def word_diff(baseline: str, other: str) -> list[Piece]:
    """``other`` against ``baseline`` word by word: kept text, inserted text and deleted text
    in reading order."""
    if len(baseline) + len(other) > MAX_DIFF_CHARS:
        return [Piece("same", other)]
    a, b = _TOKENS.findall(baseline), _TOKENS.findall(other)
    pieces: list[Piece] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op == "equal":
            pieces.append(Piece("same", "".join(b[j1:j2])))
            continue
        if op in ("delete", "replace"):
            pieces.append(Piece("del", "".join(a[i1:i2])))
        if op in ("insert", "replace"):
            pieces.append(Piece("ins", "".join(b[j1:j2])))
    return pieces
