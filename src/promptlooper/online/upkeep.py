"""The server's background upkeep of online experiments: guardrail checks and bandit updates
on a fixed period, so an arm is stopped and weights move whether or not anyone reads the
results, and whether the data came as browser events or as performance records; and the
day's picture of every live experiment's metric terms, which the series over time read
(``timeline.keep``), kept here so that ingestion writes nothing more for it.

Each experiment is checked in its own transaction with its row locked
(``service.lock_experiment``), as every admin edit locks it: two server processes never stop the
same arm or update the same weights twice, and an edit made meanwhile waits for the check to
commit and then works on what it wrote (nor does the check write from a definition an edit
replaced).
A failure is logged and the loop goes on: upkeep must never take the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.online import bandits, guardrails, service, timeline
from promptlooper.online.models import OnlineExperiment

logger = logging.getLogger(__name__)


async def run_once(
    sessionmaker: async_sessionmaker[AsyncSession], now: datetime | None = None
) -> None:
    """Keep today's picture of every live experiment's terms, and check every live one that has
    auto-stop on or is a bandit, once."""
    now = now or datetime.now(UTC)
    async with sessionmaker() as session:
        if not await service.experiments_enabled(session):
            return
        live = await session.execute(
            select(
                OnlineExperiment.experiment_key, OnlineExperiment.auto_stop, OnlineExperiment.type
            )
            .where(
                OnlineExperiment.archived_at.is_(None),
                OnlineExperiment.enabled.is_(True),
                OnlineExperiment.status == "running",
            )
            .order_by(OnlineExperiment.experiment_key)
        )
        found = live.all()
        await timeline.keep(session, [key for key, *_ in found], now.date())
        await session.commit()
    keys = [key for key, auto_stop, kind in found if auto_stop or kind == "bandit"]
    for key in keys:
        async with sessionmaker() as session:
            await check(session, key, now)
            await session.commit()


async def check(session: AsyncSession, key: str, now: datetime | None = None) -> list[str]:
    """One experiment's guardrails and bandit schedule, its row locked; what was done, in
    words. The caller commits."""
    experiment = await service.lock_experiment(session, key)
    if not service.is_live(experiment):
        return []
    done = []
    for stopped in await guardrails.check(session, experiment):
        logger.warning(
            "guardrail %s stopped arm %s of online experiment %s",
            stopped.metric,
            stopped.variant_key,
            key,
        )
        done.append(f"stopped arm {stopped.variant_key} (guardrail {stopped.metric})")
    change = await bandits.reweigh(session, experiment, now=now or datetime.now(UTC))
    if change is not None:
        shares = ", ".join(f"{k}={w:.1%}" for k, w in change.weights.items())
        done.append(f"new weights: {shares}")
    return done


class Upkeep:
    """The loop, started with the app and cancelled at shutdown."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession], period: float) -> None:
        self._sessionmaker = sessionmaker
        self._period = period
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop())

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self._period)
            try:
                await run_once(self._sessionmaker)
            except Exception:
                logger.exception("online experiment upkeep failed; retrying next period")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
