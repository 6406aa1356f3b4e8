"""A user's Python callable as a provider: ``python:package.module:function``.

The function receives ``(prompt, model, params, system)`` and returns a string, a dict with
``text`` (and optionally ``tokens_in``/``tokens_out``), or an ``AdapterResponse``; it may be
async. Importing user code is only allowed where the settings allow it (the CLI does; a server
does only with ``ALLOW_PYTHON_CALLABLES``).
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable
from typing import Any

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters.base import AdapterError, AdapterResponse, ProviderConfig
from promptlooper.sweeps.adapters.registry import register_adapter


def load_callable(path: str) -> Callable[..., Any]:
    """Import ``package.module:function``."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise Invalid(f"callable {path!r} must be written package.module:function")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except (ImportError, AttributeError) as exc:
        raise Invalid(f"cannot import {path!r}: {exc}") from exc
    if not callable(target):
        raise Invalid(f"{path!r} is not callable")
    return target


class PythonAdapter:
    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self._functions: dict[str, Callable[..., Any]] = {}

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        function = self._functions.get(model) or self._functions.setdefault(
            model, load_callable(model)
        )
        started = time.perf_counter()
        try:
            result = function(prompt, model, params, system)
            if inspect.isawaitable(result):
                result = await result
        except Exception as exc:
            raise AdapterError(f"{model} raised {type(exc).__name__}: {exc}") from exc
        latency_ms = (time.perf_counter() - started) * 1000
        if isinstance(result, AdapterResponse):
            return result
        if isinstance(result, dict):
            return AdapterResponse(
                text=str(result.get("text", "")),
                tokens_in=int(result.get("tokens_in", 0)),
                tokens_out=int(result.get("tokens_out", 0)),
                latency_ms=latency_ms,
                model=model,
            )
        return AdapterResponse(text=str(result), latency_ms=latency_ms, model=model)

    async def list_models(self) -> list[str]:
        return sorted(self._functions)

    async def test_connection(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@register_adapter("python")
def _factory(config: ProviderConfig) -> PythonAdapter:
    return PythonAdapter(config)
