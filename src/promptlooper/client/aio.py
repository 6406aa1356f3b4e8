"""``AsyncClient``: the asyncio SDK; every resource method returns an awaitable."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from promptlooper.client._base import DEFAULT_TTL, Resources, connection
from promptlooper.client.calls import Call, Resolve, request_args
from promptlooper.client.errors import unreachable
from promptlooper.client.events import Flush
from promptlooper.client.outbox import Enqueue, Queue


class AsyncClient(Resources):
    """The same resources and options as ``Client``; use ``async with`` or ``aclose()``."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        project_id: Any = None,
        ttl: float = DEFAULT_TTL,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        url, headers = connection(base_url, api_key, token)
        self._http = httpx.AsyncClient(
            base_url=url, headers=headers, timeout=timeout, transport=transport
        )
        self._senders: set[asyncio.Task[None]] = set()
        self._attach(self._run, project_id, ttl)

    async def _run(self, call: Call | Resolve | Enqueue | Flush) -> Any:
        if isinstance(call, Resolve):
            return await self._resolve(call)
        if isinstance(call, Enqueue):
            return call.outbox.add(call.operation, call.body, lambda: self._start(call.outbox))
        if isinstance(call, Flush):
            if (sending := call.outbox.sender()) is not None:
                await asyncio.shield(sending)
            return call.outbox.delivery()
        if call.skip:
            return None
        if call.after is not None and (sending := call.after.sender()) is not None:
            await asyncio.shield(sending)
        if call.check is not None:
            call.check()
        try:
            response = await self._http.request(**request_args(call))
        except httpx.TransportError as exc:
            raise unreachable(exc) from exc
        return call.result(response)

    def _start(self, outbox: Queue) -> asyncio.Task[None]:
        """A task sends queued calls: the caller's loop goes on."""
        task = asyncio.get_running_loop().create_task(self._send(outbox))
        self._senders.add(task)
        task.add_done_callback(self._senders.discard)
        return task

    async def _send(self, outbox: Queue) -> None:
        while (batch := outbox.take()) is not None:
            try:
                outcome: httpx.Response | Exception = await self._http.request(
                    **request_args(batch)
                )
            except asyncio.CancelledError as exc:  # the loop is going: nothing more is sent
                outbox.settle(exc)  # fails this batch and the calls waiting
                outbox.take()  # now empty: marks the sending done
                raise
            except Exception as exc:  # whatever it was, the batch's futures must learn of it
                outcome = exc
            outbox.settle(outcome)

    async def _resolve(self, call: Resolve) -> Any:
        cache = self.resolve_cache
        cached = cache.fresh(call)
        if cached is not None:
            return cached
        try:
            response = await self._http.get(
                call.path, params=call.params, headers=cache.headers(call)
            )
        except httpx.TransportError as exc:
            return cache.unreachable(call, str(exc) or type(exc).__name__)
        return cache.absorb(call, response)

    async def aclose(self) -> None:
        """Send what is still queued, then close the connections."""
        await asyncio.gather(*self._senders)
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
