"""Jinja2 templating for user prompts, always sandboxed.

A sweep file is user input run on the server, so templates render in Jinja's
``ImmutableSandboxedEnvironment``: attribute tricks such as ``''.__class__.__mro__`` raise
``SecurityError`` instead of reaching Python internals.

A field that is exactly one ``{{ expression }}`` evaluates to the expression's value with its
type (``"{{ config.temperature }}"`` gives the float 0.7, not the string "0.7").
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, UndefinedError, meta, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from promptlooper.errors import Invalid

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>(?:(?!\}\}).)*)\}\}\s*$", re.DOTALL)

_env = ImmutableSandboxedEnvironment(
    undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
)


GLOBAL_NAMES = frozenset(_env.globals)
"""Names every template may use without defining them (``range``, ``dict``, ...)."""


class TemplateError(Invalid):
    """A template that does not compile, refers to something undefined, or breaks the sandbox."""


@lru_cache(maxsize=4096)
def _compile(source: str) -> Any:
    try:
        return _env.from_string(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc


@lru_cache(maxsize=1024)
def _compile_expression(source: str) -> Any:
    try:
        return _env.compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error: {exc.message}") from exc


def is_template(value: object) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def render(source: str, context: dict[str, Any]) -> str:
    """Render ``source`` with ``context``; undefined names and sandbox escapes raise."""
    try:
        return _compile(source).render(context)
    except UndefinedError as exc:
        raise TemplateError(f"undefined template variable: {exc.message}") from exc
    except SecurityError as exc:
        raise TemplateError(f"template blocked by the sandbox: {exc}") from exc


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
        try:
            result = _compile_expression(match.group("expr").strip())(**context)
            if isinstance(result, Undefined):
                str(result)  # a strict undefined raises when it is used
            return result
        except UndefinedError as exc:
            raise TemplateError(f"undefined template variable: {exc.message}") from exc
        except SecurityError as exc:
            raise TemplateError(f"template blocked by the sandbox: {exc}") from exc
    return render(value, context)


def check_syntax(source: str) -> None:
    """Raise ``TemplateError`` if ``source`` does not compile."""
    _compile(source)


@lru_cache(maxsize=4096)
def referenced_names(source: str) -> frozenset[str]:
    """Top-level variables a template reads (``input``, ``config``, a row field...)."""
    try:
        return frozenset(meta.find_undeclared_variables(_env.parse(source)))
    except TemplateSyntaxError as exc:
        raise TemplateError(f"template syntax error on line {exc.lineno}: {exc.message}") from exc


@lru_cache(maxsize=4096)
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
