"""Name-keyed scorer registry. Built-ins register on import of their modules."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from pydantic import ValidationError

from promptlooper.errors import Invalid, problem_message
from promptlooper.sweeps.scorers.base import BaseScorer, ScorerContext

ScorerClass = type[BaseScorer]

_CLASSES: dict[str, ScorerClass] = {}
_BUILTIN_MODULES = {
    "promptlooper.sweeps.scorers.text": (
        "exact_match",
        "contains",
        "icontains",
        "contains_all",
        "contains_any",
        "regex",
        "similarity",
        "numeric",
        "length",
    ),
    "promptlooper.sweeps.scorers.structured": ("json_valid", "json_schema"),
    "promptlooper.sweeps.scorers.model": ("llm_judge", "embedding_similarity"),
    "promptlooper.sweeps.scorers.python": ("python",),
}


def register_scorer(name: str) -> Callable[[ScorerClass], ScorerClass]:
    def decorate(cls: ScorerClass) -> ScorerClass:
        _CLASSES[name] = cls
        return cls

    return decorate


def _builtin_module(type_name: str) -> str | None:
    return next((mod for mod, names in _BUILTIN_MODULES.items() if type_name in names), None)


def scorer_types() -> list[str]:
    builtin = {name for names in _BUILTIN_MODULES.values() for name in names}
    return sorted(builtin | set(_CLASSES))


def scorer_class(type_name: str) -> ScorerClass:
    module = _builtin_module(type_name)
    if type_name not in _CLASSES and module is not None:
        importlib.import_module(module)
    cls = _CLASSES.get(type_name)
    if cls is None:
        raise Invalid(f"unknown scorer type {type_name!r}; known: {', '.join(scorer_types())}")
    return cls


def create_scorer(
    type_name: str, name: str, options: dict[str, Any], context: ScorerContext | None = None
) -> BaseScorer:
    """Build a scorer, validating its options; errors name the offending option."""
    cls = scorer_class(type_name)
    try:
        parsed = cls.options_model.model_validate(options)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise Invalid(f"scorer {name!r} ({type_name}): {where}: {problem_message(first)}") from exc
    return cls(name, parsed, context or ScorerContext())
