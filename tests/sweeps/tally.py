"""A provider that counts every call it is sent (``tally:<model>``), for budget tests.

It answers like ``mock`` (same options), after ``latency_ms``, so that calls are in flight
when a test stops the process; the model ``judge`` answers ``8``, a grade. A call counts when
it is sent, as a paid provider bills it whether or not its answer is ever read.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from promptlooper.sweeps.adapters import AdapterResponse, ProviderConfig, register_adapter
from promptlooper.sweeps.adapters.mock import MockAdapter

SENT: Counter[str] = Counter()
"""Calls sent, by model."""


class TallyAdapter(MockAdapter):
    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        SENT[model] += 1
        response = await super().complete(prompt, model, params, system=system)
        if model == "judge":
            return AdapterResponse("8", response.tokens_in, 1, response.latency_ms, model)
        return response


@register_adapter("tally")
def _factory(config: ProviderConfig) -> TallyAdapter:
    return TallyAdapter(config)
