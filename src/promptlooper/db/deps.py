"""FastAPI dependencies: a request-scoped session, and a list's offset.

The session never commits on its own: the route that writes commits once, so a failure anywhere
before that leaves nothing half-written.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Query, Request
from sqlalchemy.ext.asyncio import AsyncSession


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.sessionmaker() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]

MAX_OFFSET = 2**63 - 1
"""The largest OFFSET the databases take (a signed 64-bit integer): past it the driver fails."""

Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
"""A list's ``offset`` parameter."""
