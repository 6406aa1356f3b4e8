"""A scripted provider registered like a real one (``scripted:<model>``), for engine tests.

Options: ``replies`` (a list, cycled) or a reply per model; ``fail`` (an error message) makes
every call fail; ``tokens`` sets the usage reported. Calls are recorded on the adapter.
"""

from __future__ import annotations

from typing import Any

from promptlooper.sweeps.adapters import (
    AdapterError,
    AdapterResponse,
    ProviderConfig,
    register_adapter,
)


class ScriptedAdapter:
    def __init__(self, config: ProviderConfig) -> None:
        self.options = config.options
        self.calls: list[tuple[str, str, dict[str, Any], str | None]] = []

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        self.calls.append((prompt, model, params, system))
        if "fail" in self.options:
            raise AdapterError(self.options["fail"], retryable=False)
        replies = self.options.get("replies", ["mock response"])
        text = replies[(len(self.calls) - 1) % len(replies)].format(n=len(self.calls))
        tokens_in, tokens_out = self.options.get("tokens", (10, 5))
        return AdapterResponse(text, tokens_in, tokens_out, latency_ms=42.0, model=model)

    async def list_models(self) -> list[str]:
        return ["scripted"]

    async def test_connection(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@register_adapter("scripted")
def _factory(config: ProviderConfig) -> ScriptedAdapter:
    return ScriptedAdapter(config)
