"""The scorer protocol and the helpers built-in scorers share.

A scorer turns one run's output into a number; the engine clamps it to [0, 1]. ``score`` may
be sync or async. ``context`` carries ``input``, ``expected``, ``row``, ``config``,
``stages`` and ``output``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict

from promptlooper.sweeps.engine.templating import render_value


@runtime_checkable
class Scorer(Protocol):
    name: str

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> Any: ...


@dataclass(slots=True)
class ScorerContext:
    """What a scorer factory may use beyond its options: a way to call a model (the LLM
    judge) and whether user code may be imported."""

    complete: Callable[..., Awaitable[Any]] | None = None
    allow_python: bool = False
    extras: dict[str, Any] = field(default_factory=dict)


class ScorerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ReferenceOptions(ScorerOptions):
    value: Any = None
    """A template over the run context to compare against; the row's ``expected`` if unset."""


class BaseScorer:
    """Holds the name and validated options; subclasses implement ``score``."""

    options_model: ClassVar[type[ScorerOptions]] = ScorerOptions
    needs_reference: ClassVar[bool] = False

    def __init__(self, name: str, options: ScorerOptions, context: ScorerContext) -> None:
        self.name = name
        self.options = options
        self.context = context

    def templates(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        """The scorer's own templates, by option, each rendering over a run's score context:
        a sweep checks them against the sandbox's limits when it is created."""
        value = getattr(self.options, "value", None)
        if value is None:
            return {}
        return {"value": lambda context: render_value(value, context)}

    def reference(self, context: dict[str, Any]) -> Any:
        value = getattr(self.options, "value", None)
        if value is not None:
            return render_value(value, context)
        if context.get("expected") is None:
            raise ValueError(f"scorer {self.name!r} needs an `expected` value for this row")
        return context["expected"]
