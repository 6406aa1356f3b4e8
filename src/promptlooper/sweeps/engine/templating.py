"""Jinja2 templating for user prompts, always sandboxed.

A sweep file is user input run on the server, so templates render in Jinja's
``ImmutableSandboxedEnvironment``: attribute tricks such as ``''.__class__.__mro__`` raise
``SecurityError`` instead of reaching Python internals. ``sandbox.BoundedSandbox`` adds limits
on what a template may build and compute, so no template can take the server's memory or time.
A template is user code: whatever it raises is a ``TemplateError`` of the run that renders it.

A field that is exactly one ``{{ expression }}`` evaluates to the expression's value with its
type (``"{{ config.temperature }}"`` gives the float 0.7, not the string "0.7").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError

from promptlooper.errors import Invalid
from promptlooper.sweeps.engine.limits import LimitExceeded, metered
from promptlooper.sweeps.engine.sandbox import BoundedSandbox

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)

_env = BoundedSandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)


GLOBAL_NAMES = frozenset(_env.globals)
"""Names every template may use without defining them (``range``, ``dict``, ...)."""


class TemplateError(Invalid):
    """A template that does not compile, refers to something undefined, breaks the sandbox,
    or raises while it renders."""


class TemplateLimitError(TemplateError):
    """A template that went past one of the sandbox's limits: judged at creation where it can
    be, since every run of it would fail alike."""


@contextmanager
def _rendering() -> Iterator[None]:
    """One render under the sandbox's limits, whatever it raises told as a ``TemplateError``."""
    try:
        with metered():
            yield
    except TemplateError:
        raise
    except LimitExceeded as exc:
        raise TemplateLimitError(f"template exceeded a limit: it {exc}") from exc
    except RecursionError as exc:
        raise TemplateLimitError("template exceeded a limit: it recursed too deeply") from exc
    except UndefinedError as exc:
        raise TemplateError(f"undefined template variable: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"template blocked by the sandbox: {exc}") from exc
    except Exception as exc:
        raise TemplateError(f"template failed: {type(exc).__name__}: {exc}") from exc


# Compiled templates hold their code and source: a bounded number of them stays cached.
@lru_cache(maxsize=128)
def _compile(source: str) -> Any:
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc
    except RecursionError as exc:
        raise TemplateError("template syntax error: nested too deeply") from exc


@lru_cache(maxsize=128)
def _compile_expression(source: str) -> Any:
    try:
        return _env.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from exc


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(source: str, context: dict[str, Any]) -> str:
    """Render ``source`` with ``context``; anything the template raises is a ``TemplateError``."""
    template = _compile(source)
    with _rendering():
        return template.render(context)


def render_value(value: Any, context: dict[str, Any]) -> Any:
    """Resolve templates in a field value, recursively through dicts and lists.

    A string that is one ``{{ expression }}`` keeps the expression's type; any other string
    with template syntax renders to a string; everything else is returned unchanged.
    """
    if isinstance(value, dict):
        return {key: render_value(item, context) for key, item in value.items()}
    if isinstance(value, list):
        return [render_value(item, context) for item in value]
    if not is_template(value):
        return value
    match = _SINGLE_EXPRESSION.match(value)
    if match and "{%" not in value:
        expression: Callable[..., Any] = _compile_expression(match.group("expr").strip())
        with _rendering():
            result = expression(**context)
            if isinstance(result, Undefined):
                str(result)  # a strict undefined raises when it is used
            return result
    return render(value, context)


def check_syntax(source: str) -> None:
    """Raise ``TemplateError`` if ``source`` does not compile, and ``TemplateLimitError`` if it
    reads no variable and goes past the sandbox's limits: such a template (``{{ 'a' * 10**9
    }}``) would fail every run alike, so it is refused where it is written. One that reads
    variables is judged where they are known (a sweep renders it for its first row)."""
    template = _compile(source)
    if referenced_names(source) - GLOBAL_NAMES:
        return
    try:
        with _rendering():
            template.render()
    except TemplateLimitError:
        raise
    except TemplateError:
        pass  # what else it raises is each run's to report


@lru_cache(maxsize=128)
def referenced_names(source: str) -> frozenset[str]:
    """Top-level variables a template reads (``input``, ``config``, a row field...)."""
    try:
        return frozenset(meta.find_undeclared_variables(_env.parse(source)))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc


@lru_cache(maxsize=128)
def referenced_attributes(source: str, name: str) -> frozenset[str]:
    """Attributes read from ``name`` (``config.model`` and ``config['model']`` give "model")."""
    found: set[str] = set()
    for node in _env.parse(source).find_all((nodes.Getattr, nodes.Getitem)):
        target = node.node
        if isinstance(target, nodes.Name) and target.name == name:
            if isinstance(node, nodes.Getattr):
                found.add(node.attr)
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                found.add(node.arg.value)
    return frozenset(found)
