"""The adapter protocol every provider implements, and the provider settings it is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable


@dataclass(slots=True)
class AdapterResponse:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    latency_ms: float = 0.0
    model: str = ""
    finish_reason: str | None = None


class AdapterError(Exception):
    """A provider call that failed. ``retryable`` calls (429, 5xx, timeouts, dropped
    connections) are tried again by the executor, after ``retry_after`` seconds when the
    provider said so."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool = False,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


@runtime_checkable
class Adapter(Protocol):
    """A provider's calls. An adapter may also define ``turn(model)``, an async context
    manager entered before each call and held during it: the wait for a model that answers
    one call at a time, and for it to load, which the executor keeps out of the call's
    timeout."""

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse: ...

    async def list_models(self) -> list[str]: ...

    async def test_connection(self) -> bool: ...

    async def aclose(self) -> None: ...


@dataclass(slots=True)
class ModelPrice:
    """US dollars per million tokens."""

    input: float = 0.0
    output: float = 0.0


@dataclass(slots=True)
class ProviderConfig:
    """How to reach one provider: the ``providers:`` entry of a sweep file, resolved.

    ``name`` is what model references use (``name:model``); ``type`` picks the adapter, so
    several OpenAI-compatible servers can be named apart (``vllm: {type: openai, ...}``).
    """

    name: str
    type: str
    base_url: str | None = None
    api_key: str | None = None
    concurrency: int | None = None
    rate_limit: float | None = None  # requests per minute
    timeout: float = 60.0
    max_retries: int = 4
    ca_bundle: str | None = None  # PEM certificates trusted instead of the system's
    prices: dict[str, ModelPrice] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)

    def identity(self) -> dict[str, Any]:
        """What, beyond the call itself, decides this provider's answers: its type, where it
        is reached and its adapter options. Not the API key (a new key reaches the same
        model), nor the name, so two names for one endpoint share cached answers."""
        return {"type": self.type, "base_url": self.base_url, "options": self.options}

    def cost(self, model: str, tokens_in: int, tokens_out: int) -> float:
        price = self.prices.get(model)
        if price is None:
            return 0.0
        return (tokens_in * price.input + tokens_out * price.output) / 1_000_000
