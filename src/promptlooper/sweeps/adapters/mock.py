"""A deterministic, offline, clearly simulated provider for demos and tests.

``mock:echo`` answers with the prompt itself. Any other ``mock:<name>`` answers from a seeded
pseudo-random generator, so the same prompt, model and temperature always give the same text.
Given ``knowledge`` (keyword → answer) it plays a classifier: when a keyword occurs in the
prompt it answers correctly with the model's ``accuracy`` (lowered by temperature), otherwise
with another known answer; prompts asking for "one word" get the bare label, others a sentence.
That makes prompt wording, model and temperature visibly matter in a demo sweep.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from typing import Any

from promptlooper.sweeps.adapters.base import AdapterResponse, ProviderConfig
from promptlooper.sweeps.adapters.registry import register_adapter

SIMULATED = "(simulated)"


class MockAdapter:
    def __init__(self, config: ProviderConfig) -> None:
        options = config.options
        self.latency_s = float(options.get("latency_ms", 0)) / 1000
        self.knowledge = {str(k).lower(): str(v) for k, v in options.get("knowledge", {}).items()}
        self.models: dict[str, dict[str, Any]] = options.get("models", {})

    def _rng(self, prompt: str, model: str, params: dict[str, Any]) -> random.Random:
        key = f"{model}|{params.get('temperature', 0)}|{params.get('seed', '')}|{prompt}"
        return random.Random(hashlib.sha256(key.encode()).digest())

    def _classify(self, prompt: str, model: str, params: dict[str, Any]) -> str | None:
        lowered = prompt.lower()
        truth = next((answer for kw, answer in self.knowledge.items() if kw in lowered), None)
        if truth is None:
            return None
        rng = self._rng(prompt, model, params)
        accuracy = float(self.models.get(model, {}).get("accuracy", 0.8))
        accuracy -= 0.3 * float(params.get("temperature", 0) or 0)
        others = sorted(set(self.knowledge.values()) - {truth}) or [truth]
        label = truth if rng.random() < accuracy else rng.choice(others)
        return label if "one word" in lowered else f"I think this is about {label}."

    def _text(self, prompt: str, model: str, params: dict[str, Any]) -> str:
        if model == "echo":
            return prompt
        label = self._classify(prompt, model, params)
        if label is not None:
            return label
        words = prompt.split()
        rng = self._rng(prompt, model, params)
        picked = [rng.choice(words) for _ in range(min(8, len(words)))] if words else []
        return " ".join(["Simulated", "reply:", *picked])

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        text = self._text(prompt if system is None else f"{system}\n{prompt}", model, params)
        return AdapterResponse(
            text=text,
            tokens_in=len(prompt.split()) + len((system or "").split()),
            tokens_out=len(text.split()),
            latency_ms=self.latency_s * 1000,
            model=f"{model} {SIMULATED}",
        )

    async def list_models(self) -> list[str]:
        return sorted({"echo", *self.models})

    async def test_connection(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@register_adapter("mock")
def _factory(config: ProviderConfig) -> MockAdapter:
    return MockAdapter(config)
