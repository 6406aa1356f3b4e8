"""A short memory of API keys already checked.

Every SDK call carries an API key, and checking one costs a query and a commit: for a training
step or an event batch that is a large share of the request. A key resolved in the last ``ttl``
seconds is trusted without asking the database again. Revoking a key through this server
forgets every remembered key at once; a key revoked, or a user deactivated, from another
process (the CLI) stops working within ``ttl``.

When a remembered key lapses, the requests that present it meanwhile wait for one check of
it rather than each asking the database: a client with 64 requests in flight would otherwise
send 64 queries, commits and connection checkouts every ``ttl`` seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

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
        self._checking: dict[str, asyncio.Future[Principal]] = {}
        self._generation = 0

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

    async def resolve(self, api_key: str, check: Callable[[], Awaitable[Principal]]) -> Principal:
        """The remembered principal of ``api_key``, or ``check``'s answer (remembered), shared
        with every request that asks for the same key while it runs; its error, if it fails,
        goes to all of them and nothing is remembered."""
        if self.ttl <= 0:
            return await check()
        if (remembered := self.get(api_key)) is not None:
            return remembered
        digest = api_key_hash(api_key)
        checking = self._checking.get(digest)
        if checking is None:
            checking = asyncio.ensure_future(self._check(api_key, digest, check, self._generation))
            self._checking[digest] = checking
        # Shielded: a request that goes away must not cancel the check the others wait for.
        return await asyncio.shield(checking)

    async def _check(
        self,
        api_key: str,
        digest: str,
        check: Callable[[], Awaitable[Principal]],
        generation: int,
    ) -> Principal:
        try:
            principal = await check()
        finally:
            if self._checking.get(digest) is asyncio.current_task():
                del self._checking[digest]
        if generation == self._generation:  # not cleared meanwhile (a key was revoked)
            self.put(api_key, principal)
        return principal

    def clear(self) -> None:
        self._entries.clear()
        self._checking.clear()
        self._generation += 1
