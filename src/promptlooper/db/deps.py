"""FastAPI dependencies: a request-scoped session, and a list's offset.

The session never commits on its own: the route that writes commits once, so a failure anywhere
before that leaves nothing half-written. A request that only reads (GET, HEAD) reads beside
SQLite's writer; any other takes the write lock at its first statement, so it queues behind
other writers instead of failing (``db.engine``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession

READING_METHODS = frozenset({"GET", "HEAD"})


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    state = request.app.state
    bind = state.reader if request.method in READING_METHODS else state.engine
    async with state.sessionmaker(bind=bind) as session:
        yield session


async def get_read_session(request: Request) -> AsyncIterator[AsyncSession]:
    """A session that only reads, whatever the method: for a route that checks access and
    hands the work to sessions of their own (a sweep's start), which would otherwise wait for
    the write lock this one holds until the request ends."""
    state = request.app.state
    async with state.sessionmaker(bind=state.reader) as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session)]

MAX_OFFSET = 2**63 - 1
"""The largest OFFSET the databases take (a signed 64-bit integer): past it the driver fails."""

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
"""A list's ``offset`` parameter."""
