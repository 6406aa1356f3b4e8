"""Login throttling with the ``limits`` library (moving window, in process memory).

One server process holds one budget per client address and username; the counters need no
database or Redis round trip, so throttling cannot itself fail a login.
"""

from __future__ import annotations

import math
import time

from limits import parse
from limits.aio.storage import MemoryStorage
from limits.aio.strategies import MovingWindowRateLimiter

from promptlooper.errors import RateLimited


class LoginThrottle:
    """Counts login attempts per client address and username."""

    def __init__(self, limit: str) -> None:
        self._item = parse(limit)
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    async def hit(self, client: str, username: str) -> None:
        """Record an attempt; raise ``RateLimited`` once the budget is spent."""
        key = (client, username.casefold())
        if not await self._limiter.hit(self._item, *key):
            stats = await self._limiter.get_window_stats(self._item, *key)
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise RateLimited(f"Too many login attempts; try again in {retry_after} s", retry_after)
