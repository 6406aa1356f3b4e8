"""Text that both databases store alike.

PostgreSQL stores NUL (U+0000) in neither text nor JSON, and no UTF-8 encoder accepts a lone
surrogate (U+D800 to U+DFFF, which JSON's ``\\ud800`` escapes produce), so SQLite's driver
fails on it too. What users send is refused with such text; what a model answers is data, kept
with it replaced.
"""

from __future__ import annotations

import re

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable(text: str) -> str:
    """``text`` with each character no database here can store replaced by U+FFFD (in Python
    a string holds code points, so any surrogate in it is a lone one)."""
    return _UNSTORABLE.sub(REPLACEMENT, text)
