"""The engine's storage in the database: the response cache and the run sink.

Both batch, because a sweep makes hundreds of small requests a second:

- cache lookups made at the same moment by different workers are answered by one
  ``SELECT ... WHERE key IN (...)``;
- finished runs collect for a moment and are written by one background task in one
  transaction: run status, stage results, scores, new cache entries and cache hit counts
  together. A run is therefore recorded whole or not at all, and a sweep costs a handful of
  commits instead of thousands.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from promptlooper.db.base import utcnow
from promptlooper.db.upsert import insert_ignore
from promptlooper.sweeps.engine.cache import CachedResponse, CacheStats
from promptlooper.sweeps.engine.persistence import RunOutcome
from promptlooper.sweeps.models import CacheEntry, Run, Score, StageResult

_cache = CacheEntry.__table__
_runs = Run.__table__
_stages = StageResult.__table__
_scores = Score.__table__


class SqlResponseCache:
    """The database cache, with lookups coalesced and a process-local layer in front.

    New entries and hit counts are written by the sink, in the same transaction as the runs
    that produced them.
    """

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._local: dict[str, CachedResponse | None] = {}
        self._waiting: dict[str, list[asyncio.Future[CachedResponse | None]]] = {}
        self._new: dict[str, CachedResponse] = {}
        self._hits: Counter[str] = Counter()
        self._lookups: set[asyncio.Task[None]] = set()
        self.stats = CacheStats()

    @property
    def has_pending_writes(self) -> bool:
        return bool(self._new or self._hits)

    async def preload(self, keys: list[str], chunk: int = 500) -> None:
        """Look many keys up at once (a sweep's first-stage calls are known in advance)."""
        wanted = [key for key in dict.fromkeys(keys) if key not in self._local]
        for start in range(0, len(wanted), chunk):
            part = wanted[start : start + chunk]
            found = await self._select(part)
            self._local.update({key: found.get(key) for key in part})

    async def _select(self, keys: list[str]) -> dict[str, CachedResponse]:
        columns = (
            _cache.c.key,
            _cache.c.response,
            _cache.c.model,
            _cache.c.tokens_in,
            _cache.c.tokens_out,
        )
        async with self._engine.connect() as conn:
            rows = await conn.execute(select(*columns).where(_cache.c.key.in_(keys)))
        return {
            key: CachedResponse(text, model, t_in, t_out) for key, text, model, t_in, t_out in rows
        }

    async def get(self, key: str) -> CachedResponse | None:
        if key in self._local:
            found = self._local[key]
        else:
            future: asyncio.Future[CachedResponse | None] = (
                asyncio.get_running_loop().create_future()
            )
            if not self._waiting:
                asyncio.get_running_loop().call_soon(self._start_lookup)
            self._waiting.setdefault(key, []).append(future)
            found = await future
        if found is None:
            self.stats.misses += 1
        else:
            self.stats.hits += 1
            self._hits[key] += 1
        return found

    def _start_lookup(self) -> None:
        waiting, self._waiting = self._waiting, {}
        task = asyncio.ensure_future(self._lookup(waiting))
        self._lookups.add(task)  # keep a reference until it is done
        task.add_done_callback(self._lookups.discard)

    async def _lookup(
        self, waiting: dict[str, list[asyncio.Future[CachedResponse | None]]]
    ) -> None:
        try:
            found = await self._select(list(waiting))
        except Exception as exc:
            for futures in waiting.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in waiting.items():
            self._local[key] = found.get(key)
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))

    async def put(self, key: str, response: CachedResponse) -> None:
        self._local[key] = response
        self._new[key] = response

    async def write_pending(self, conn: AsyncConnection) -> None:
        """Add the new entries and hit counts to ``conn``'s transaction."""
        new, self._new = self._new, {}
        hits, self._hits = self._hits, Counter()
        now = utcnow()
        await insert_ignore(
            conn,
            _cache,  # type: ignore[arg-type]
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
            await conn.execute(
                update(_cache)
                .where(_cache.c.key == bindparam("k"))
                .values(hits=_cache.c.hits + bindparam("n"), last_hit_at=now),
                [{"k": key, "n": n} for key, n in hits.items()],
            )


class SqlRunSink:
    """Collects outcomes; a background task writes them every ``interval`` seconds, and a
    full batch is written at once (the recording worker waits, which bounds memory)."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        cache: SqlResponseCache | None = None,
        batch_size: int = 500,
        interval: float = 0.2,
    ) -> None:
        self._engine = engine
        self._cache = cache
        self._batch_size = batch_size
        self._interval = interval
        self._pending: list[RunOutcome] = []
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None

    async def record(self, outcome: RunOutcome) -> None:
        self._pending.append(outcome)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_periodically())
        if len(self._pending) >= self._batch_size:
            await self._write()

    async def _write_periodically(self) -> None:
        # Never cancelled: a write cut off mid-transaction would lose its batch.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self._write()

    async def flush(self) -> None:
        """Write everything recorded so far and stop the background writer."""
        if self._writer is not None:
            self._stopping.set()
            await self._writer
            self._writer = None
            self._stopping.clear()
        await self._write()

    async def _write(self) -> None:
        async with self._lock:
            batch, self._pending = self._pending, []
            if not batch and (self._cache is None or not self._cache.has_pending_writes):
                return
            async with self._engine.begin() as conn:
                await write_outcomes(conn, batch)
                if self._cache is not None:
                    await self._cache.write_pending(conn)


async def write_outcomes(conn: AsyncConnection, batch: list[RunOutcome]) -> None:
    """Record finished runs: their status and totals, stage results and scores."""
    if not batch:
        return
    await conn.execute(
        update(_runs).where(_runs.c.id == bindparam("rid")),
        [
            {
                "rid": o.run_id,
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
    await insert_ignore(conn, _stages, stages)  # type: ignore[arg-type]
    await insert_ignore(conn, _scores, scores)  # type: ignore[arg-type]


async def cache_summary(session: AsyncSession) -> dict[str, int]:
    entries, hits = (
        await session.execute(select(func.count(), func.coalesce(func.sum(CacheEntry.hits), 0)))
    ).one()
    return {"entries": int(entries), "hits": int(hits)}
