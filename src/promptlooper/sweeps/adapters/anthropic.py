"""Anthropic's Messages API."""

from __future__ import annotations

import time
from typing import Any

from promptlooper.sweeps.adapters.base import AdapterError, AdapterResponse, ProviderConfig
from promptlooper.sweeps.adapters.http import HttpJsonAdapter
from promptlooper.sweeps.adapters.registry import register_adapter

API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 1024  # the Messages API requires max_tokens


class AnthropicAdapter(HttpJsonAdapter):
    default_base_url = "https://api.anthropic.com/v1"

    def headers(self) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if self.config.api_key:
            headers["x-api-key"] = self.config.api_key
        return headers

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        body: dict[str, Any] = {"max_tokens": DEFAULT_MAX_TOKENS, **params, "model": model}
        body["messages"] = [{"role": "user", "content": prompt}]
        if system:
            body["system"] = system
        started = time.perf_counter()
        data = await self.request_json("POST", "/messages", body)
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            text = "".join(
                block.get("text", "") for block in data["content"] if block.get("type") == "text"
            )
        except (KeyError, TypeError) as exc:
            raise AdapterError(f"{self.config.name} response has no content blocks") from exc
        usage = data.get("usage") or {}
        return AdapterResponse(
            text=text,
            tokens_in=int(usage.get("input_tokens") or 0),
            tokens_out=int(usage.get("output_tokens") or 0),
            latency_ms=latency_ms,
            model=data.get("model") or model,
            finish_reason=data.get("stop_reason"),
        )


@register_adapter("anthropic")
def _factory(config: ProviderConfig) -> AnthropicAdapter:
    return AnthropicAdapter(config)
