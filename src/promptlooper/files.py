"""Reading the text files a user points PromptLooper at (sweep files, datasets, templates,
definitions) and writing the ones they ask for (exports): every one fails the same way, with
one line naming the file."""

from __future__ import annotations

from collections.abc import Iterator
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


def read_lines(path: Path, where: str = "") -> Iterator[str]:
    """The file's lines (each with its newline) one at a time, failing as ``read_text`` does:
    a dataset file of a million lines is never held as one string and a list of lines."""
    prefix = f"{where}: " if where else ""
    offset = 0
    try:
        with path.open("rb") as file:
            for line in file:
                try:
                    yield line.decode("utf-8")
                except UnicodeDecodeError as exc:
                    byte = offset + exc.start
                    raise Invalid(f"{prefix}{path} is not UTF-8 text (byte {byte})") from exc
                offset += len(line)
    except OSError as exc:
        raise Invalid(f"{prefix}cannot read {path}: {exc.strerror or exc}") from exc


def write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8. ``Invalid`` when the file cannot be written (a missing folder,
    no permission): the user named the file, so the message names it, not the database."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise Invalid(f"cannot write {path}: {exc.strerror or exc}") from exc
