"""Every run's step metrics and step counter, written in the order the steps happened, several
steps to a transaction.

Why not a transaction per ``optim_step``: at tens of steps a second, an insert, an update of the
run and a commit cost the server more than the rest of the request, and they competed for the
CPU with the training itself. Entries are written at most ``FLUSH_SECONDS`` after the step.
Everything that reads steps in this server (metrics, a run's ``step``) flushes first, so it
never shows less than was acknowledged; another process (the CLI) may see a step that much
later. A crash can lose that much of the log, as it loses the run's in-memory state since its
last checkpoint anyway: the run resumes from there and its log is rewritten from that step.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, insert, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.training.models import TrainingRun, TrainingStep
from promptlooper.training.schemas import OptimResult

FLUSH_SECONDS = 0.25

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Rewind:
    """``load_state`` took the run back to ``step``: later steps are another branch."""

    step: int


_Entry = OptimResult | _Rewind


class StepLog:
    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self.sessionmaker = sessionmaker
        self._pending: list[tuple[uuid.UUID, _Entry]] = []
        self._writing = asyncio.Lock()  # one flush at a time keeps the writes in order
        self._timer: asyncio.TimerHandle | None = None
        self._flushes: set[asyncio.Task[None]] = set()

    def add(self, run_id: uuid.UUID, result: OptimResult) -> None:
        """Note a step; call in the order the steps were made."""
        self._pending.append((run_id, result))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(FLUSH_SECONDS, self._flush_soon)

    async def rewind(self, run_id: uuid.UUID, step: int) -> None:
        """Note that the run went back to ``step``, and wait until that is written."""
        self._pending.append((run_id, _Rewind(step)))
        await self.flush()

    def _flush_soon(self) -> None:
        self._timer = None
        task = asyncio.create_task(self._flush_logged())
        self._flushes.add(task)
        task.add_done_callback(self._flushes.discard)

    async def _flush_logged(self) -> None:
        try:
            await self.flush()
        except Exception:  # nobody awaits this flush: say what was lost
            logger.exception("writing training steps failed; those entries are lost")

    async def flush(self) -> None:
        """Write everything noted so far."""
        async with self._writing:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            entries, self._pending = self._pending, []
            by_run: dict[uuid.UUID, list[_Entry]] = {}
            for run_id, entry in entries:
                by_run.setdefault(run_id, []).append(entry)
            for run_id, run_entries in by_run.items():
                await self._write(run_id, run_entries)

    async def _write(self, run_id: uuid.UUID, entries: list[_Entry]) -> None:
        async with self.sessionmaker() as session:
            try:
                steps: list[OptimResult] = []
                for entry in entries:
                    if isinstance(entry, OptimResult):
                        steps.append(entry)
                        continue
                    if steps:
                        await self._steps(session, run_id, steps)
                        steps = []
                    await self._rewind(session, run_id, entry.step)
                if steps:
                    await self._steps(session, run_id, steps)
                await session.commit()
            except IntegrityError:  # the run was deleted meanwhile (by the CLI, say)
                logger.info("training run %s is gone: %d log entries dropped", run_id, len(entries))

    @staticmethod
    async def _steps(session: AsyncSession, run_id: uuid.UUID, steps: list[OptimResult]) -> None:
        # A step number seen before means the run lost its in-memory state (a restart) and
        # resumed from a checkpoint: the new history replaces the old from there on.
        await session.execute(
            delete(TrainingStep).where(
                TrainingStep.run_id == run_id, TrainingStep.step >= steps[0].step
            )
        )
        await session.execute(
            insert(TrainingStep),
            [
                {
                    "run_id": run_id,
                    "step": s.step,
                    "loss": s.loss,
                    "tokens": s.tokens,
                    "grad_norm": s.grad_norm,
                    "learning_rate": s.learning_rate,
                }
                for s in steps
            ],
        )
        await StepLog._set_step(session, run_id, steps[-1].step)

    @staticmethod
    async def _rewind(session: AsyncSession, run_id: uuid.UUID, step: int) -> None:
        await session.execute(
            delete(TrainingStep).where(TrainingStep.run_id == run_id, TrainingStep.step > step)
        )
        await StepLog._set_step(session, run_id, step)

    @staticmethod
    async def _set_step(session: AsyncSession, run_id: uuid.UUID, step: int) -> None:
        await session.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(step=step))
