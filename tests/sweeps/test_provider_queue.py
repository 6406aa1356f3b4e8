"""A provider call's timeout counts the provider's time, not the wait for its turn: a model
that answers one call at a time (a ``local`` model's worker) after loading on first use keeps
every call of a busy sweep within a timeout far shorter than the queue."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from promptlooper.sweeps.adapters import (
    AdapterError,
    AdapterResponse,
    ProviderConfig,
    register_adapter,
)
from promptlooper.sweeps.engine.executor import Providers

LOAD_SECONDS = 1.5
CALL_SECONDS = 0.2
TIMEOUT = 1.0


class OneAtATime:
    """Like a local model's worker: it loads on its first call (or ``prepare``), then answers
    one call at a time, in order, each taking ``CALL_SECONDS``."""

    def __init__(self, config: ProviderConfig) -> None:
        self.turn = asyncio.Lock()
        self.loaded = False

    async def _load(self) -> None:
        if not self.loaded:
            await asyncio.sleep(LOAD_SECONDS)
            self.loaded = True

    async def prepare(self, model: str) -> None:
        async with self.turn:
            await self._load()

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        async with self.turn:
            await self._load()
            await asyncio.sleep(float(params.get("seconds", CALL_SECONDS)))
        return AdapterResponse(text=prompt, model=model)

    async def list_models(self) -> list[str]:
        return []

    async def test_connection(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@register_adapter("one_at_a_time")
def _factory(config: ProviderConfig) -> OneAtATime:
    return OneAtATime(config)


def _providers() -> Providers:
    config = ProviderConfig(
        name="queued", type="one_at_a_time", concurrency=1, timeout=TIMEOUT, max_retries=0
    )
    return Providers({"queued": config})


async def test_calls_queued_behind_a_load_and_each_other_do_not_time_out():
    providers = _providers()
    calls = [providers.complete("queued:m", f"call {i}", {}, None) for i in range(10)]
    started = asyncio.get_running_loop().time()
    answers = await asyncio.gather(*calls)
    waited = asyncio.get_running_loop().time() - started
    assert [a.text for a in answers] == [f"call {i}" for i in range(10)]
    # The last call waited for the load and nine calls, far past its timeout.
    assert waited > LOAD_SECONDS + 9 * CALL_SECONDS > TIMEOUT
    assert providers.retries == 0


async def test_a_call_slower_than_its_timeout_still_times_out():
    providers = _providers()
    await providers.complete("queued:m", "warm", {}, None)
    with pytest.raises(AdapterError, match="timed out after 1 s"):
        await providers.complete("queued:m", "slow", {"seconds": TIMEOUT * 2}, None)
