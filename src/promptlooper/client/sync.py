"""``Client``: the blocking SDK."""

from __future__ import annotations

from typing import Any

import httpx

from promptlooper.client._base import DEFAULT_TTL, Resources, connection
from promptlooper.client.calls import Call, Resolve, request_args


class Client(Resources):
    """``Client(base_url, api_key=...)``; ``project_id`` is the default for project-scoped
    calls, ``ttl`` how long a resolved config is served without asking the server."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        token: str | None = None,
        project_id: Any = None,
        ttl: float = DEFAULT_TTL,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        url, headers = connection(base_url, api_key, token)
        self._http = httpx.Client(
            base_url=url, headers=headers, timeout=timeout, transport=transport
        )
        self._attach(self._run, project_id, ttl)

    def _run(self, call: Call | Resolve) -> Any:
        if isinstance(call, Resolve):
            return self._resolve(call)
        if call.skip:
            return None
        response = self._http.request(**request_args(call))
        return call.result(response)

    def _resolve(self, call: Resolve) -> Any:
        cache = self.resolve_cache
        cached = cache.fresh(call)
        if cached is not None:
            return cached
        try:
            response = self._http.get(call.path, params=call.params, headers=cache.headers(call))
        except httpx.TransportError as exc:
            return cache.unreachable(call, str(exc) or type(exc).__name__)
        return cache.absorb(call, response)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
