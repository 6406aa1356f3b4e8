"""Which process executes an experiment, vouched for by a heartbeat in the database.

An experiment is running only while its lease is live. The process that starts it (a server,
or ``promptlooper sweep run``) takes the lease in one conditional ``UPDATE``, so two servers
sharing a database cannot both start it, and renews it every third of its length while the
sweep runs. A process that dies stops renewing: once the lease lapses the experiment counts as
interrupted, and any process may cancel, delete or start it again. A process that finds its
lease gone (cancelled from another server, or lapsed and taken over) stops executing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, and_, func, literal, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.db.base import utcnow
from promptlooper.db.types import UTCDateTime
from promptlooper.errors import Conflict
from promptlooper.sweeps.models import Experiment, interrupted_message

logger = logging.getLogger(__name__)


def live(now: datetime) -> ColumnElement[bool]:
    """Running under a lease that has not lapsed."""
    return and_(Experiment.status == "running", Experiment.lease_expires_at > now)


def lapsed(now: datetime) -> ColumnElement[bool]:
    """Marked running, but no process vouches for it any more."""
    return and_(
        Experiment.status == "running",
        or_(Experiment.lease_expires_at.is_(None), Experiment.lease_expires_at <= now),
    )


class LeaseLost(Conflict):
    """Another process cancelled the experiment, or took it over after the lease lapsed."""


class Lease:
    """This process's claim on one experiment; ``kept()`` renews it while a block runs."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        experiment_id: uuid.UUID,
        owner: str,
        seconds: float,
    ) -> None:
        self._sessionmaker = sessionmaker
        self.experiment_id = experiment_id
        self.owner = owner
        self.seconds = seconds
        self.lost = False
        self.stop_status = "cancelled"
        """The status a cancellation of the executing task ends in (and why, if not asked)."""
        self.stop_error: str | None = None

    @classmethod
    async def acquire(
        cls,
        sessionmaker: async_sessionmaker[AsyncSession],
        experiment_id: uuid.UUID,
        seconds: float,
        *,
        use_cache: bool | None = None,
    ) -> Lease | None:
        """Mark the experiment running under a new lease of ours; None when a live lease is
        someone else's. ``use_cache``, when given, becomes the experiment's cache choice."""
        owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        now = utcnow()
        values = {
            "status": "running",
            "lease_owner": owner,
            "lease_expires_at": now + timedelta(seconds=seconds),
            "started_at": func.coalesce(Experiment.started_at, literal(now, UTCDateTime)),
            "completed_at": None,
            "error": None,
            "updated_at": now,
        }
        if use_cache is not None:
            values["use_cache"] = use_cache
        statement = (
            update(Experiment)
            .where(Experiment.id == experiment_id, ~live(now))
            .values(values)
            .execution_options(synchronize_session=False)
        )
        async with sessionmaker() as session:
            result = await session.execute(statement)
            await session.commit()
        if result.rowcount != 1:  # type: ignore[attr-defined]
            return None
        return cls(sessionmaker, experiment_id, owner, seconds)

    def _ours(self) -> ColumnElement[bool]:
        return and_(Experiment.id == self.experiment_id, Experiment.lease_owner == self.owner)

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours."""
        now = utcnow()
        statement = (
            update(Experiment)
            .where(self._ours(), Experiment.status == "running")
            .values(lease_expires_at=now + timedelta(seconds=self.seconds))
            .execution_options(synchronize_session=False)
        )
        async with self._sessionmaker() as session:
            result = await session.execute(statement)
            await session.commit()
        return result.rowcount == 1  # type: ignore[attr-defined]

    async def release(self, status: str, error: str | None) -> None:
        """Record how the execution ended, if the experiment is still ours to speak for."""
        now = utcnow()
        statement = (
            update(Experiment)
            .where(self._ours())
            .values(
                status=status,
                error=error,
                completed_at=now,
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        async with self._sessionmaker() as session:
            await session.execute(statement)
            await session.commit()

    @contextlib.asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        """Renew the lease while the block runs. If it turns out lost, the block's task is
        cancelled (``lost`` tells that cancellation apart); a renewal that fails (the
        database is briefly away) is tried again at the next beat."""
        task = asyncio.current_task()
        assert task is not None

        async def beat() -> None:
            while True:
                await asyncio.sleep(self.seconds / 3)
                try:
                    # Shielded: stopped mid-renewal, the update would still commit rather
                    # than leave a transaction (on SQLite, the write lock) behind.
                    ours = await asyncio.shield(self.renew())
                except Exception as exc:
                    logger.warning("renewing the lease of %s failed: %s", self.experiment_id, exc)
                    continue
                if not ours:
                    self.lost = True
                    task.cancel()
                    return

        beating = asyncio.create_task(beat(), name=f"lease-{self.experiment_id}")
        try:
            yield
        finally:
            beating.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await beating


async def cancel_unowned(session: AsyncSession, experiment_id: uuid.UUID) -> bool:
    """Cancel an experiment marked running that this process does not execute: its owner,
    if alive, sees the lease gone at its next beat and stops. False when it is not running."""
    now = utcnow()
    result = await session.execute(
        update(Experiment)
        .where(Experiment.id == experiment_id, Experiment.status == "running")
        .values(
            status="cancelled",
            completed_at=now,
            updated_at=now,
            lease_owner=None,
            lease_expires_at=None,
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]


async def mark_interrupted(session: AsyncSession) -> int:
    """Record as ``interrupted`` every experiment whose lease has lapsed (a server does this
    when it starts); returns how many. ``start`` resumes them."""
    now = utcnow()
    rows = await session.execute(select(Experiment.id, Experiment.lease_owner).where(lapsed(now)))
    marked = 0
    for experiment_id, owner in rows.all():
        result = await session.execute(
            update(Experiment)
            .where(Experiment.id == experiment_id, lapsed(now))
            .values(
                status="interrupted",
                error=interrupted_message(owner),
                updated_at=now,
                lease_owner=None,
                lease_expires_at=None,
            )
            .execution_options(synchronize_session=False)
        )
        marked += result.rowcount  # type: ignore[attr-defined]
    return marked
