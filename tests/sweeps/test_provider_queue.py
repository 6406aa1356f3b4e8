"""A provider call's timeout counts the provider's time, not the wait for its turn: a model
that answers one call at a time (a ``local`` model's worker) after loading on first use keeps
every call of a busy sweep within a timeout far shorter than the queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
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
    """Like the ``local`` adapter: its model's worker answers one call at a time in arrival
    order, loading the model with its first call (``CALL_SECONDS`` a call, ``LOAD_SECONDS``
    to load), and the adapter's calls take turns, the model loaded first."""

    def __init__(self, config: ProviderConfig) -> None:
        self.worker = asyncio.Lock()
        self.turns = asyncio.Lock()
        self.loaded = False

    async def _on_worker(self, seconds: float) -> None:
        async with self.worker:
            if not self.loaded:
                await asyncio.sleep(LOAD_SECONDS)
                self.loaded = True
            await asyncio.sleep(seconds)

    @contextlib.asynccontextmanager
    async def turn(self, model: str) -> AsyncIterator[None]:
        async with self.turns:
            await self._on_worker(0)
            yield

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        await self._on_worker(float(params.get("seconds", CALL_SECONDS)))
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
    config = ProviderConfig(name="queued", type="one_at_a_time", timeout=TIMEOUT, max_retries=0)
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
