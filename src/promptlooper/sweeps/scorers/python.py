"""A user's Python callable as a scorer: ``{type: python, callable: "pkg.module:function"}``.

The function gets ``(input_data, output, context)`` and returns a number (it may be async).
Importing user code is only allowed where the settings allow it.
"""

from __future__ import annotations

from typing import Any

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters.python import load_callable
from promptlooper.sweeps.scorers.base import BaseScorer, ScorerOptions
from promptlooper.sweeps.scorers.registry import register_scorer


class PythonOptions(ScorerOptions):
    callable: str


@register_scorer("python")
class PythonScorer(BaseScorer):
    options_model = PythonOptions

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        if not self.context.allow_python:
            raise Invalid(
                f"scorer {self.name!r}: python callables are disabled on this server "
                "(set ALLOW_PYTHON_CALLABLES=true to allow them)"
            )
        o = self.options
        assert isinstance(o, PythonOptions)
        self._function = load_callable(o.callable)

    def score(self, input_data: Any, output: str, context: dict[str, Any]) -> Any:
        return self._function(input_data, output, context)
