"""A short memory of API keys already checked.

Every SDK call carries an API key, and checking one costs a query and a commit: for a training
step or an event batch that is a large share of the request. A key resolved in the last ``ttl``
seconds is trusted without asking the database again. Revoking a key through this server
forgets every remembered key at once; a key revoked, or a user deactivated, from another
process (the CLI) stops working within ``ttl``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from promptlooper.auth.principal import Principal
from promptlooper.auth.tokens import api_key_hash


class PrincipalCache:
    def __init__(
        self, ttl: float, size: int = 4096, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.size = size
        self._clock = clock
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, api_key: str) -> Principal | None:
        if self.ttl <= 0:
            return None
        found = self._entries.get(api_key_hash(api_key))
        if found is None or found[1] < self._clock():
            return None
        return found[0]

    def put(self, api_key: str, principal: Principal) -> None:
        if self.ttl <= 0:
            return
        if len(self._entries) >= self.size:  # the oldest first: insertion order
            del self._entries[next(iter(self._entries))]
        self._entries[api_key_hash(api_key)] = (principal, self._clock() + self.ttl)

    def clear(self) -> None:
        self._entries.clear()
