"""Group commit: many requests' writes in one transaction, each answered once it is durable.

Requests that arrive while a transaction is being committed wait for the next one, which
writes them all together; a request is answered only after the transaction holding its work
has committed. A write path that commits alone pays a connection checkout, its statements and
a commit per request; grouped, a burst of requests pays them once. Each kind of write brings
its own ``work``: given the session and the waiting items, it writes them (without committing)
and says, per item, what to answer or the error that refused that item alone; an error raised
by ``work`` or the commit refuses every item of the transaction.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

logger = logging.getLogger(__name__)

Item = TypeVar("Item")
Answer = TypeVar("Answer")


@dataclass
class _Waiting(Generic[Item, Answer]):
    item: Item
    done: asyncio.Future[Answer]


class GroupCommit(Generic[Item, Answer]):
    """The writers of one kind of write, for one app."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        work: Callable[[AsyncSession, list[Item]], Awaitable[list[Answer | Exception]]],
        *,
        size: Callable[[Item], int],
        writers: int,
        busy: int,
    ):
        """``size`` measures an item's rows: once ``busy`` rows wait, another transaction (up
        to ``writers`` at once) writes beside the running ones."""
        self._sessionmaker = sessionmaker
        self._work = work
        self._size = size
        self._most = writers
        self._busy = busy
        self._pending: list[_Waiting[Item, Answer]] = []
        self._pending_size = 0
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Answer:
        """Write ``item`` with whatever else waits; its answer once committed (or its error)."""
        done: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending.append(_Waiting(item, done))
        self._pending_size += self._size(item)
        # A writer that found nothing left has finished: only running ones count (a done
        # callback would drop it too late, after a request that still saw it had queued here).
        self._writers = {writer for writer in self._writers if not writer.done()}
        if not self._writers or (
            len(self._writers) < self._most and self._pending_size >= self._busy
        ):
            self._writers.add(asyncio.create_task(self._drain()))
        return await done

    async def _drain(self) -> None:
        """Commit everything pending, again and again, until nothing is left. A burst of
        commits shares one session (a new one after a failure): each checkout from the pool
        costs a round trip to check the connection."""
        while self._pending:
            try:
                async with self._sessionmaker() as session:
                    while self._pending:
                        batch, self._pending, self._pending_size = self._pending, [], 0
                        try:
                            answers = await self._work(session, [w.item for w in batch])
                            await session.commit()
                        except Exception as exc:
                            _settle(batch, [exc] * len(batch))
                            break
                        _settle(batch, answers)
            except Exception:  # closing a session whose connection broke; go on with another
                logger.exception("closing a group-commit session failed")


def _settle(batch: list[_Waiting[Item, Answer]], answers: list[Answer | Exception]) -> None:
    for waiting, answer in zip(batch, answers, strict=True):
        if waiting.done.done():  # its request went away
            continue
        if isinstance(answer, Exception):
            waiting.done.set_exception(answer)
        else:
            waiting.done.set_result(answer)
