"""Response cache keys and the cache protocol.

A key covers everything that determines a provider's answer: the rendered prompt, the system
prompt, the model and the call parameters. Storage is a protocol so the engine stays free of
the database; ``sweeps/store.py`` keeps the cache in the database, ``MemoryCache`` in a dict.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol


def cache_key(prompt: str, model: str, params: dict[str, Any], system: str | None = None) -> str:
    material = json.dumps(
        [prompt, system, model, params], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(material.encode()).hexdigest()


@dataclass(slots=True, frozen=True)
class CachedResponse:
    text: str
    model: str
    tokens_in: int = 0
    tokens_out: int = 0


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
