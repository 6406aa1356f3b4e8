"""``AsyncClient``: the asyncio SDK; every resource method returns an awaitable."""

from __future__ import annotations

from typing import Any

import httpx

from promptlooper.client._base import DEFAULT_TTL, Resources, connection
from promptlooper.client.calls import Call, Resolve, request_args


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
        self._attach(self._run, project_id, ttl)

    async def _run(self, call: Call | Resolve) -> Any:
        if isinstance(call, Resolve):
            return await self._resolve(call)
        if call.skip:
            return None
        response = await self._http.request(**request_args(call))
        return call.result(response)

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
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()
