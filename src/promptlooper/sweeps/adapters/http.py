"""Shared HTTP plumbing for providers spoken to over JSON: one connection pool per provider
(``transport.HttpPool``), and one mapping from HTTP failures to retryable or final
``AdapterError``s."""

from __future__ import annotations

import email.utils
import json
import time
from typing import Any

from promptlooper.sweeps.adapters.base import AdapterError, ProviderConfig
from promptlooper.sweeps.adapters.transport import HttpPool, TransportError

RETRYABLE_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        return max(0.0, when.timestamp() - time.time())


def _error_message(body: bytes) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body[:200].decode(errors="replace").strip()
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error or data)[:200]


class HttpJsonAdapter:
    """Base for adapters that POST JSON and read JSON back."""

    default_base_url = ""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.base_url = (config.base_url or self.default_base_url).rstrip("/")
        self._pool: HttpPool | None = None

    def headers(self) -> dict[str, str]:
        return {}

    def _client(self) -> HttpPool:
        if self._pool is None:
            try:
                self._pool = HttpPool(
                    self.base_url,
                    limit=self.config.concurrency or 100,
                    timeout=self.config.timeout,
                    headers=self.headers(),
                )
            except ValueError as exc:
                raise AdapterError(f"{self.config.name}: {exc}") from exc
        return self._pool

    async def request_json(self, method: str, path: str, body: Any = None) -> Any:
        client = self._client()
        try:
            response = await client.request(
                method, path, None if body is None else json.dumps(body).encode()
            )
        except TimeoutError as exc:
            raise AdapterError(
                f"{self.config.name} timed out after {self.config.timeout:g} s", retryable=True
            ) from exc
        except TransportError as exc:
            raise AdapterError(
                f"cannot reach {self.config.name} at {self.base_url}: {exc}", retryable=True
            ) from exc
        raw = response.body
        if response.status >= 400:
            raise AdapterError(
                f"{self.config.name} answered HTTP {response.status}: {_error_message(raw)}",
                retryable=response.status in RETRYABLE_STATUSES,
                retry_after=parse_retry_after(response.headers.get("retry-after")),
                status=response.status,
            )
        try:
            return json.loads(raw)
        except ValueError as exc:
            raise AdapterError(
                f"{self.config.name} sent a malformed response (not JSON): {raw[:120]!r}"
            ) from exc

    async def list_models(self) -> list[str]:
        """Both OpenAI-style and Anthropic servers list models as ``{"data": [{"id"}]}``."""
        data = await self.request_json("GET", "/models")
        return sorted(item["id"] for item in data.get("data", []))

    async def test_connection(self) -> bool:
        try:
            await self.list_models()
        except AdapterError:
            return False
        return True

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
