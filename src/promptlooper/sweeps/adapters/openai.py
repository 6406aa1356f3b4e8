"""Any OpenAI-compatible chat-completions server: OpenAI, vLLM, Ollama, llama.cpp, LM Studio."""

from __future__ import annotations

import time
from typing import Any

from promptlooper.sweeps.adapters.base import AdapterError, AdapterResponse, ProviderConfig
from promptlooper.sweeps.adapters.http import HttpJsonAdapter
from promptlooper.sweeps.adapters.registry import register_adapter


class OpenAIAdapter(HttpJsonAdapter):
    default_base_url = "https://api.openai.com/v1"

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.config.api_key}"} if self.config.api_key else {}

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": prompt})
        started = time.perf_counter()
        data = await self.request_json(
            "POST", "/chat/completions", {**params, "model": model, "messages": messages}
        )
        latency_ms = (time.perf_counter() - started) * 1000
        try:
            choice = data["choices"][0]
            text = choice["message"]["content"] or ""
        except (KeyError, IndexError, TypeError) as exc:
            raise AdapterError(f"{self.config.name} response has no choices[0].message") from exc
        usage = data.get("usage") or {}
        return AdapterResponse(
            text=text,
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            latency_ms=latency_ms,
            model=data.get("model") or model,
            finish_reason=choice.get("finish_reason"),
        )


@register_adapter("openai")
def _factory(config: ProviderConfig) -> OpenAIAdapter:
    return OpenAIAdapter(config)
