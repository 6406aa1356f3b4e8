"""Reading the text files a user points PromptLooper at (sweep files, datasets, templates,
definitions): every reader fails the same way, with one line naming the file."""

from __future__ import annotations

from pathlib import Path

from promptlooper.errors import Invalid


def read_text(path: Path, where: str = "") -> str:
    """The file's text. ``Invalid`` (prefixed with ``where``, the field or option that named
    the file) when it cannot be read or is not UTF-8: a binary file picked by mistake must not
    end in a traceback."""
    prefix = f"{where}: " if where else ""
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"{prefix}cannot read {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise Invalid(f"{prefix}{path} is not UTF-8 text (byte {exc.start})") from exc
