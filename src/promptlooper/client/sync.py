"""``Client``: the blocking SDK."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from promptlooper.client._base import DEFAULT_TTL, Resources, connection
from promptlooper.client.calls import Call, Resolve, request_args
from promptlooper.client.errors import unreachable
from promptlooper.client.events import Flush
from promptlooper.client.outbox import Enqueue, Queue


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
        self._sender: ThreadPoolExecutor | None = None
        self._sender_lock = threading.Lock()
        self._attach(self._run, project_id, ttl)

    def _run(self, call: Call | Resolve | Enqueue | Flush) -> Any:
        if isinstance(call, Resolve):
            return self._resolve(call)
        if isinstance(call, Enqueue):
            return call.outbox.add(call.operation, call.body, lambda: self._start(call.outbox))
        if isinstance(call, Flush):
            if (sending := call.outbox.sender()) is not None:
                sending.result()
            return call.outbox.delivery()
        if call.skip:
            return None
        if call.after is not None and (sending := call.after.sender()) is not None:
            sending.result()
        if call.check is not None:
            call.check()
        try:
            response = self._http.request(**request_args(call))
        except httpx.TransportError as exc:
            raise unreachable(exc) from exc
        return call.result(response)

    def _start(self, outbox: Queue) -> Any:
        """A thread sends queued calls, one run's at a time: the caller's loop goes on."""
        with self._sender_lock:
            if self._sender is None:
                self._sender = ThreadPoolExecutor(1, thread_name_prefix="promptlooper-queue")
            return self._sender.submit(self._send, outbox)

    def _send(self, outbox: Queue) -> None:
        while (batch := outbox.take()) is not None:
            try:
                outcome: httpx.Response | Exception = self._http.request(**request_args(batch))
            except Exception as exc:  # whatever it was, the batch's futures must learn of it
                outcome = exc
            outbox.settle(outcome)

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
        """Send what is still queued, then close the connections."""
        with self._sender_lock:
            sender, self._sender = self._sender, None
        if sender is not None:
            sender.shutdown(wait=True)
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
