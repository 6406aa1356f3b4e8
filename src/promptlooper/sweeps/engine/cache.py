"""Response cache keys and the cache protocol.

A key covers everything that determines a provider's answer: the rendered prompt, the system
prompt, the model, the call parameters and the provider the call goes to (its type, endpoint
and options), so pointing a provider at another deployment never replays the first one's
answers. Storage is a protocol so the engine stays free of the database; ``sweeps/store.py``
keeps the cache in the database, one project's entries per sweep, ``MemoryCache`` in a dict.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


def cache_key(
    prompt: str,
    model: str,
    params: Mapping[str, Any],
    system: str | None,
    provider: Mapping[str, Any],
) -> str:
    """The key of one call: ``model`` is the provider's own model name and ``provider`` what
    identifies the provider (``ProviderConfig.identity()``)."""
    material = json.dumps(
        [prompt, system, model, params, provider],
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class CachedResponse:
    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0
    sanitized: bool = False
    """The provider's text was not stored verbatim (see ``StageOutcome.sanitized``)."""


class ResponseCache(Protocol):
    async def get(self, key: str) -> CachedResponse | None: ...

    async def put(self, key: str, response: CachedResponse) -> None: ...


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class MemoryCache:
    """A process-local cache (tests, and runs with no database)."""

    def __init__(self) -> None:
        self.entries: dict[str, CachedResponse] = {}
        self.stats = CacheStats()

    async def get(self, key: str) -> CachedResponse | None:
        found = self.entries.get(key)
        if found is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
        return found

    async def put(self, key: str, response: CachedResponse) -> None:
        self.entries[key] = response
