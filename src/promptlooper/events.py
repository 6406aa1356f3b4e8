"""Event bus: in-process listeners, plus Redis pub/sub when ``REDIS_URL`` is set.

Publishing is fire-and-forget by contract: a listener that raises, or a Redis server that is down,
is logged and never reaches the publisher, so an event can never fail a sweep run or a request.
While Redis is unreachable the bus stops trying for a short cool-down instead of paying a
connection timeout on every event.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import suppress
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger(__name__)

Event = dict[str, Any]
Listener = Callable[[Event], Awaitable[None] | None]

DEFAULT_CHANNEL = "promptlooper:events"


class EventBus:
    """Publish events to local listeners and, optionally, to a Redis channel."""

    def __init__(
        self,
        redis_url: str = "",
        *,
        channel: str = DEFAULT_CHANNEL,
        timeout: float = 0.5,
        cooldown: float = 5.0,
    ) -> None:
        self.channel = channel
        self._redis_url = redis_url
        self._redis: Redis | None = None
        self._timeout = timeout
        self._cooldown = cooldown
        self._redis_down_until = 0.0
        self._listeners: list[Listener] = []

    @property
    def redis_enabled(self) -> bool:
        return bool(self._redis_url)

    @property
    def has_audience(self) -> bool:
        """Whether a published event reaches anyone: hot paths skip building events that
        nobody would receive."""
        return bool(self._redis_url or self._listeners)

    def _client(self) -> Redis:
        if self._redis is None:
            from redis.asyncio import Redis  # only loaded when Redis is configured

            self._redis = Redis.from_url(
                self._redis_url,
                socket_connect_timeout=self._timeout,
                socket_timeout=self._timeout,
            )
        return self._redis

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Add an in-process listener (sync or async); returns a function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener)

    async def publish(self, event: Mapping[str, Any]) -> None:
        """Deliver ``event`` to every listener and to Redis. Never raises."""
        payload: Event = dict(event)
        payload.setdefault("ts", time.time())
        for listener in list(self._listeners):
            try:
                result = listener(payload)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                logger.exception("event listener %r failed on %s", listener, payload.get("type"))
        if self._redis_url:
            await self._publish_redis(payload)

    async def _publish_redis(self, payload: Event) -> None:
        if time.monotonic() < self._redis_down_until:
            return
        try:
            message = json.dumps(payload, default=str)
            await asyncio.wait_for(self._client().publish(self.channel, message), self._timeout)
        except Exception as exc:
            self._redis_down_until = time.monotonic() + self._cooldown
            logger.warning("Redis publish failed (%s); retrying in %.0f s", exc, self._cooldown)

    async def listen(self) -> AsyncIterator[Event]:
        """Events as they arrive: from Redis (every process) when configured, else local ones."""
        if self._redis_url:
            from redis.asyncio import Redis

            # A client of its own: a subscriber blocks on reads, so no socket timeout here.
            client = Redis.from_url(self._redis_url, socket_connect_timeout=self._timeout)
            try:
                async with client.pubsub() as pubsub:
                    await pubsub.subscribe(self.channel)
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            yield json.loads(message["data"])
            finally:
                await client.aclose()
            return
        queue: asyncio.Queue[Event] = asyncio.Queue()
        unsubscribe = self.subscribe(queue.put_nowait)
        try:
            while True:
                yield await queue.get()
        finally:
            unsubscribe()

    async def ping(self) -> bool:
        """Whether Redis answers (False when it is not configured)."""
        if not self._redis_url:
            return False
        try:
            return bool(await asyncio.wait_for(self._client().ping(), self._timeout))
        except Exception:
            return False

    async def close(self) -> None:
        if self._redis is not None:
            with suppress(Exception):
                await self._redis.aclose()
            self._redis = None
