"""The limits a template renders under, and the checks that keep it within them.

Each check judges an operation before Python runs it (``'a' * 10**9`` never exists, even for a
moment), from its arguments: how long a padded, replaced, joined or formatted string would be,
how many bits a power has. ``metered()`` opens one render's meter; ``checked`` charges what a
template built against it. ``sandbox.BoundedSandbox`` calls them from Jinja's hooks.
"""

from __future__ import annotations

import functools
import inspect
import math
import re
import string
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from itertools import islice
from typing import Any

from jinja2.utils import Namespace

MAX_VALUE = 1_000_000
"""Characters of a string, or items (counted through nested collections), a template builds."""
MAX_OUTPUT = 1_000_000
"""Characters one render outputs."""
MAX_STEPS = 100_000
"""Loop iterations one render makes."""
MAX_CALLS = 20_000
"""Calls (of macros, methods, functions) one render makes: each costs far more than a step."""
MAX_WORK = 10 * MAX_VALUE
"""Characters and items one render builds in all."""
MAX_INT_BITS = 4096
"""Bits of an integer a template computes (``10**1000`` is fine, ``2 ** (10**10)`` not)."""


class LimitExceeded(Exception):
    """A template went past one of the sandbox's limits."""


@dataclass
class _Meter:
    steps: int = 0
    calls: int = 0
    work: int = 0

    def step(self) -> None:
        self.steps += 1
        if self.steps > MAX_STEPS:
            raise LimitExceeded(f"makes over {MAX_STEPS:,} loop iterations in one render")

    def call(self) -> None:
        self.calls += 1
        if self.calls > MAX_CALLS:
            raise LimitExceeded(f"makes over {MAX_CALLS:,} calls in one render")

    def charge(self, size: int) -> None:
        self.work += size
        if self.work > MAX_WORK:
            raise LimitExceeded(f"builds over {MAX_WORK:,} characters and items in one render")


_meter: ContextVar[_Meter | None] = ContextVar("template_meter", default=None)


@contextmanager
def metered() -> Iterator[None]:
    """Count what is rendered inside against one render's limits."""
    token = _meter.set(_Meter())
    try:
        yield
    finally:
        _meter.reset(token)


def current_meter() -> _Meter:
    meter = _meter.get()
    if meter is None:  # a render outside ``metered()`` still counts, against its own meter
        meter = _Meter()
        _meter.set(meter)
    return meter


def too_big(size: int, what: str = "a value") -> LimitExceeded:
    return LimitExceeded(
        f"builds {what} of {size:,} characters or items (the limit is {MAX_VALUE:,})"
    )


_SCALARS = frozenset({bool, int, float})


def weight(value: Any, limit: int = MAX_VALUE) -> int:
    """Characters and items in ``value``, through nested collections, counting a shared item
    each time it appears (as printing it would); stops counting once past ``limit``."""
    total, stack = 0, [value]
    while stack and total <= limit:
        item = stack.pop()
        if item is None or type(item) in _SCALARS:
            total += 1
        elif isinstance(item, str | bytes | range):
            total += len(item)
        elif isinstance(item, Namespace):
            stack.append(object.__getattribute__(item, "_Namespace__attrs"))
        elif isinstance(item, Mapping):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, Collection):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
    return total


def checked(value: Any) -> Any:
    """``value``, once it is known to be within ``MAX_VALUE``; its size is charged as work."""
    size = len(value) if type(value) is str else weight(value)
    if size > MAX_VALUE:
        raise too_big(size)
    current_meter().charge(size)
    return value


def _within(size: Any, what: str) -> None:
    """Refuse ``size`` (a number a call turns into characters or items) past the limit."""
    if isinstance(size, int | float) and size > MAX_VALUE:
        raise too_big(int(size), what)


def _length(value: Any) -> int:
    return len(value) if isinstance(value, str) else weight(value)


def _replaced_length(text: str, old: str, new: str, count: int | None) -> int:
    found = len(text) + 1 if old == "" else text.count(old)
    if count is not None and count >= 0:
        found = min(found, count)
    return len(text) + found * (len(new) - len(old))


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_FORMAT_SPEC = re.compile(r"(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?")


def check_printf(template: Any) -> None:
    """Widths and precisions of ``%`` formatting; a ``*`` width could be anything."""
    if not isinstance(template, str):
        return
    for match in _PRINTF.finditer(template):
        for size in match.groups():
            if size == "*":
                raise LimitExceeded("takes a '*' width or precision in % formatting")
            if size:
                _within(int(size), "a formatted field")


def _check_format(template: str) -> None:
    """Widths and precisions of ``str.format``; a width taken from an argument could be
    anything, so a field inside a format spec is refused."""
    for _, _, spec, _ in string.Formatter().parse(template):
        if not spec:
            continue
        if "{" in spec:
            raise LimitExceeded("takes a width or precision from a field inside a format spec")
        match = _FORMAT_SPEC.match(spec)
        for size in match.groups() if match else ():
            if size:
                _within(int(size), "a formatted field")


def _materialised(items: Any) -> list[Any]:
    """An iterable as a list of at most ``MAX_VALUE`` items (a generator may be endless)."""
    listed = list(islice(iter(items), MAX_VALUE + 1))
    if len(listed) > MAX_VALUE:
        raise too_big(len(listed), "a sequence")
    return listed


def _joined_length(items: list[Any], separator: str) -> int:
    return sum(_length(item) for item in items) + max(len(items) - 1, 0) * len(separator)


# Checks of str methods that grow a string by an argument: (text, args) -> args to call with.
def _padded(text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    _within(args[0] if args else 0, "a padded string")
    return args


def _tabs_expanded(text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    tabsize = args[0] if args else 8
    if isinstance(tabsize, int):
        _within(len(text) + text.count("\t") * tabsize, "a string")
    return args


def _str_replaced(text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if len(args) >= 2 and isinstance(args[0], str) and isinstance(args[1], str):
        count = args[2] if len(args) > 2 else None
        _within(_replaced_length(text, args[0], args[1], count), "a replaced string")
    return args


def _str_joined(separator: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    if not args:
        return args
    items = _materialised(args[0])
    _within(_joined_length(items, separator), "a joined string")
    return (items, *args[1:])


def _formatted(text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    _check_format(text)
    return args


def _translated(text: str, args: tuple[Any, ...]) -> tuple[Any, ...]:
    table = args[0] if args else None
    if isinstance(table, Mapping) and table:
        _within(len(text) * max(_length(v) for v in table.values()), "a translated string")
    return args


STR_METHOD_CHECKS: dict[str, Callable[[str, tuple[Any, ...]], tuple[Any, ...]]] = {
    "center": _padded,
    "ljust": _padded,
    "rjust": _padded,
    "zfill": _padded,
    "expandtabs": _tabs_expanded,
    "replace": _str_replaced,
    "join": _str_joined,
    "format": _formatted,
    "format_map": _formatted,
    "translate": _translated,
}


# Checks of filters (by parameter name, defaults applied) that grow their input by an argument.
def _filter_center(a: dict[str, Any]) -> None:
    _within(a["width"], "a padded string")


def _filter_indent(a: dict[str, Any]) -> None:
    text, width = str(a["s"]), a["width"]
    pad = len(width) if isinstance(width, str) else width
    if isinstance(pad, int):
        _within(len(text) + (text.count("\n") + 1) * pad, "an indented string")


def _filter_wordwrap(a: dict[str, Any]) -> None:
    text, width, wrap = str(a["s"]), a["width"], a["wrapstring"] or "\n"
    if isinstance(width, int) and width > 0:
        lines = len(text.split()) + len(text) // width + 1
        _within(len(text) + lines * len(str(wrap)), "a wrapped string")


def _filter_replace(a: dict[str, Any]) -> None:
    old, new = a["old"], a["new"]
    if isinstance(old, str) and isinstance(new, str):
        _within(_replaced_length(str(a["s"]), old, new, a["count"]), "a replaced string")


def _filter_join(a: dict[str, Any]) -> None:
    a["value"] = _materialised(a["value"])
    _within(_joined_length(a["value"], str(a["d"])), "a joined string")


def _filter_format(a: dict[str, Any]) -> None:
    check_printf(a["value"])


def _filter_pieces(name: str) -> Callable[[dict[str, Any]], None]:
    def check(a: dict[str, Any]) -> None:
        if isinstance(a[name], int | float) and a[name] > MAX_STEPS:
            raise LimitExceeded(f"asks for {name}={a[name]:,} (the limit is {MAX_STEPS:,})")

    return check


def _filter_tojson(a: dict[str, Any]) -> None:
    indent = a["indent"]
    if isinstance(indent, int) and indent > 0:
        _within((weight(a["value"]) + 1) * (indent + 1), "an indented JSON document")


def _filter_urlize(a: dict[str, Any]) -> None:
    text = str(a["value"])
    extra = sum(len(str(a[k] or "")) for k in ("target", "rel")) + 64
    _within(3 * len(text) + (len(text.split()) + 1) * extra, "a string with links")


FILTER_CHECKS: dict[str, Callable[[dict[str, Any]], None]] = {
    "center": _filter_center,
    "indent": _filter_indent,
    "wordwrap": _filter_wordwrap,
    "replace": _filter_replace,
    "join": _filter_join,
    "format": _filter_format,
    "batch": _filter_pieces("linecount"),
    "slice": _filter_pieces("slices"),
    "tojson": _filter_tojson,
    "urlize": _filter_urlize,
}


def bounded_filter(func: Callable[..., Any], check: Callable[..., None] | None) -> Any:
    """``func`` with its arguments checked first (if it has a check) and its result after;
    ``functools.wraps`` keeps the mark by which Jinja passes it a context first.

    The check sees the arguments by name, the context left out: Jinja passes one to a filter
    marked for it, and the signature (the sync function's, for a filter with an async variant)
    names it only when that function takes it itself."""
    passed = getattr(func, "jinja_pass_arg", None) is not None
    signature = inspect.signature(func)
    if passed and getattr(inspect.unwrap(func), "jinja_pass_arg", None) is not None:
        signature = signature.replace(parameters=list(signature.parameters.values())[1:])

    @functools.wraps(func)
    def bounded(*args: Any, **kwargs: Any) -> Any:
        if check is not None:
            head, rest = (args[:1], args[1:]) if passed else ((), args)
            bound = signature.bind(*rest, **kwargs)
            bound.apply_defaults()
            check(bound.arguments)
            args, kwargs = (*head, *bound.args), bound.kwargs
        return checked(func(*args, **kwargs))

    return bounded


def bounded_lipsum(lipsum: Callable[..., str]) -> Callable[..., str]:
    @functools.wraps(lipsum)
    def bounded(n: int = 5, html: bool = True, min: int = 20, max: int = 100) -> str:
        _within(n * max * 10, "lorem ipsum")
        return lipsum(n, html, min, max)

    return bounded


def joined(parts: Iterable[str], limit: int, verb: str) -> str:
    joined, size = [], 0
    for part in parts:
        size += len(part)
        if size > limit:
            raise LimitExceeded(f"{verb} over {limit:,} characters")
        joined.append(part)
    current_meter().charge(size)
    return "".join(joined)


def binop_size(operator: str, left: Any, right: Any) -> tuple[int, str] | None:
    """What ``left operator right`` would build, judged before Python builds it."""
    ints = isinstance(left, int) and isinstance(right, int)
    if operator == "**" and ints and right > 0 and abs(left) > 1:
        return math.ceil(right * math.log2(abs(left))), "bits"
    if operator == "*" and ints:
        return left.bit_length() + right.bit_length(), "bits"
    if operator == "*" and isinstance(right, int) and not isinstance(left, int | float):
        return weight(left) * max(right, 0), "items"
    if operator == "*" and isinstance(left, int) and not isinstance(right, int | float):
        return weight(right) * max(left, 0), "items"
    if operator == "+" and not isinstance(left, int | float):
        return weight(left) + weight(right), "items"
    return None
