"""The engine's storage in the database: the response cache and the run sink.

Writes are batched: finished runs collect for a few milliseconds and go to the database in one
transaction (run status, stage results, scores, new cache entries and cache hit counts
together). A run is therefore recorded whole or not at all, and thousands of runs cost a handful
of commits instead of thousands.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from promptlooper.db.base import utcnow
from promptlooper.db.upsert import insert_ignore
from promptlooper.sweeps.engine.cache import CachedResponse, CacheStats
from promptlooper.sweeps.engine.persistence import RunOutcome
from promptlooper.sweeps.models import CacheEntry, Run, Score, StageResult


class SqlResponseCache:
    """The database cache with a process-local layer in front; hits and new entries are
    written by the sink's next flush."""

    def __init__(self, sessionmaker: async_sessionmaker[AsyncSession]) -> None:
        self._sessionmaker = sessionmaker
        self._local: dict[str, CachedResponse] = {}
        self._new: dict[str, CachedResponse] = {}
        self._hits: Counter[str] = Counter()
        self.stats = CacheStats()

    async def get(self, key: str) -> CachedResponse | None:
        found = self._local.get(key)
        if found is None:
            async with self._sessionmaker() as session:
                row = await session.get(CacheEntry, key)
            if row is not None:
                found = CachedResponse(row.response, row.model, row.tokens_in, row.tokens_out)
                self._local[key] = found
        if found is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            self._hits[key] += 1
        return found

    async def put(self, key: str, response: CachedResponse) -> None:
        self._local[key] = response
        self._new[key] = response

    async def write_pending(self, session: AsyncSession) -> None:
        """Add the new entries and hit counts to ``session``'s transaction."""
        new, self._new = self._new, {}
        hits, self._hits = self._hits, Counter()
        now = utcnow()
        await insert_ignore(
            session,
            CacheEntry.__table__,  # type: ignore[arg-type]
            [
                {
                    "key": key,
                    "model": r.model,
                    "response": r.text,
                    "tokens_in": r.tokens_in,
                    "tokens_out": r.tokens_out,
                    "hits": 0,
                    "created_at": now,
                }
                for key, r in new.items()
            ],
        )
        if hits:
            table = CacheEntry.__table__
            await session.execute(
                update(table)
                .where(table.c.key == bindparam("k"))
                .values(hits=table.c.hits + bindparam("n"), last_hit_at=now),
                [{"k": key, "n": n} for key, n in hits.items()],
            )


class SqlRunSink:
    """Collects outcomes and writes them in batches (by size or age, whichever first)."""

    def __init__(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        cache: SqlResponseCache | None = None,
        batch_size: int = 200,
        max_delay: float = 0.25,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._cache = cache
        self._batch_size = batch_size
        self._max_delay = max_delay
        self._pending: list[RunOutcome] = []
        self._last_flush = time.monotonic()
        self._lock = asyncio.Lock()

    async def record(self, outcome: RunOutcome) -> None:
        self._pending.append(outcome)
        overdue = time.monotonic() - self._last_flush >= self._max_delay
        if len(self._pending) >= self._batch_size or overdue:
            await self.flush()

    async def flush(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            self._last_flush = time.monotonic()
            if not batch and self._cache is None:
                return
            async with self._sessionmaker() as session:
                await self._write(session, batch)
                if self._cache is not None:
                    await self._cache.write_pending(session)
                await session.commit()

    async def _write(self, session: AsyncSession, batch: list[RunOutcome]) -> None:
        if not batch:
            return
        await session.execute(
            update(Run),
            [
                {
                    "id": o.run_id,
                    "status": o.status,
                    "error": o.error,
                    "started_at": o.started_at,
                    "completed_at": o.completed_at,
                    "duration_ms": o.duration_ms,
                    "tokens_in": o.tokens_in,
                    "tokens_out": o.tokens_out,
                    "cost": o.cost,
                    "cached": o.cached,
                }
                for o in batch
            ],
        )
        now = utcnow()
        stages: list[dict[str, Any]] = [
            {
                "id": uuid.uuid4(),
                "run_id": o.run_id,
                "stage_index": s.stage_index,
                "prompt_sent": s.prompt_sent,
                "system_sent": s.system_sent,
                "response_raw": s.response_raw,
                "model_used": s.model_used,
                "provider": s.provider,
                "params": s.params,
                "tokens_in": s.tokens_in,
                "tokens_out": s.tokens_out,
                "latency_ms": s.latency_ms,
                "cost": s.cost,
                "cached": s.cached,
                "created_at": now,
            }
            for o in batch
            for s in o.stages
        ]
        scores = [
            {"id": uuid.uuid4(), "run_id": o.run_id, "scorer_name": name, "value": value}
            for o in batch
            for name, value in o.scores.items()
        ]
        # The unique (run, stage) and (run, scorer) keys make a replayed batch a no-op.
        await insert_ignore(session, StageResult.__table__, stages)  # type: ignore[arg-type]
        await insert_ignore(session, Score.__table__, scores)  # type: ignore[arg-type]


async def cache_summary(session: AsyncSession) -> dict[str, int]:
    entries, hits = (
        await session.execute(select(func.count(), func.coalesce(func.sum(CacheEntry.hits), 0)))
    ).one()
    return {"entries": int(entries), "hits": int(hits)}
