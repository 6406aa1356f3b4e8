"""The engine's storage in the database: the response cache and the run sink.

Both batch, because a sweep makes hundreds of small requests a second:

- cache lookups made at the same moment by different workers are answered by one
  ``SELECT ... WHERE key IN (...)``;
- finished runs collect for a moment and are written by one background task in one
  transaction: run status, stage results, scores, new cache entries and cache hit counts
  together. A run is therefore recorded whole or not at all, and a sweep costs a handful of
  commits instead of thousands.

The cache is bounded (``CacheBound``): a transaction that adds entries to a cache past its
bound also evicts the least recently used entries, of any project, down to nine tenths of it,
so a full cache is trimmed once per tenth of its size rather than on every write. Reads never
write; the time an entry was last served is recorded with the hit counts.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import bindparam, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from promptlooper.db.base import utcnow
from promptlooper.db.engine import read_only
from promptlooper.db.upsert import insert_ignore
from promptlooper.sweeps.engine.cache import CachedResponse, CacheStats
from promptlooper.sweeps.engine.persistence import RunOutcome
from promptlooper.sweeps.models import CacheEntry, Run, Score, StageResult

if TYPE_CHECKING:
    from promptlooper.settings import Settings

_cache = CacheEntry.__table__
_runs = Run.__table__
_stages = StageResult.__table__
_scores = Score.__table__


@dataclass(frozen=True, slots=True)
class CacheBound:
    """The most the whole response cache holds; None is no limit of that kind."""

    max_entries: int | None = None
    max_bytes: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> CacheBound:
        return cls(settings.cache_max_entries or None, int(settings.cache_max_bytes) or None)

    def excess(self, entries: int, size: int) -> tuple[int, int] | None:
        """The entries and bytes to evict from a cache of this size, or None when it is
        within the bound. Past either limit, both are brought down to nine tenths."""
        over_entries = self.max_entries is not None and entries > self.max_entries
        over_bytes = self.max_bytes is not None and size > self.max_bytes
        if not (over_entries or over_bytes):
            return None
        return (
            max(0, entries - _nine_tenths(self.max_entries)) if self.max_entries else 0,
            max(0, size - _nine_tenths(self.max_bytes)) if self.max_bytes else 0,
        )


def _nine_tenths(limit: int) -> int:
    return limit - limit // 10


class SqlResponseCache:
    """One project's entries in the database cache, with lookups coalesced and a
    process-local layer in front.

    New entries and hit counts are written by the sink, in the same transaction as the runs
    that produced them, and that transaction evicts what the bound no longer allows.
    """

    def __init__(
        self, engine: AsyncEngine, project_id: uuid.UUID, bound: CacheBound | None = None
    ) -> None:
        self._reader = read_only(engine)
        self._project_id = project_id
        self._bound = bound or CacheBound()
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
            _cache.c.sanitized,
        )
        query = select(*columns).where(
            _cache.c.project_id == self._project_id, _cache.c.key.in_(keys)
        )
        async with self._reader.connect() as conn:
            rows = await conn.execute(query)
        return {key: CachedResponse(*response) for key, *response in rows}

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
        """Add the new entries, hit counts and any eviction to ``conn``'s transaction.

        Rows are written in key order: two sweeps of one project writing the same keys at
        once take their locks in the same order, and neither waits on the other in a cycle."""
        new, self._new = self._new, {}
        hits, self._hits = self._hits, Counter()
        now = utcnow()
        await insert_ignore(
            conn,
            _cache,  # type: ignore[arg-type]
            [
                {
                    "project_id": self._project_id,
                    "key": key,
                    "model": r.model,
                    "response": r.text,
                    "tokens_in": r.tokens_in,
                    "tokens_out": r.tokens_out,
                    "sanitized": r.sanitized,
                    "size": len(r.text.encode()),
                    "hits": 0,
                    "created_at": now,
                    "last_used_at": now,
                }
                for key, r in sorted(new.items())
            ],
        )
        if hits:
            await conn.execute(
                update(_cache)
                .where(_cache.c.project_id == self._project_id, _cache.c.key == bindparam("k"))
                .values(hits=_cache.c.hits + bindparam("n"), last_used_at=now),
                [{"k": key, "n": n} for key, n in sorted(hits.items())],
            )
        if new:
            await evict(conn, self._bound)


async def evict(conn: AsyncConnection, bound: CacheBound) -> None:
    """Within ``conn``'s transaction, evict the least recently used entries the bound does
    not allow. Entries another transaction holds are skipped (on
    PostgreSQL) rather than waited for: the next write evicts them, and no two sweeps can
    deadlock over the cache."""
    entries, size = (
        await conn.execute(select(func.count(), func.coalesce(func.sum(_cache.c.size), 0)))
    ).one()
    excess = bound.excess(entries, int(size))
    if excess is None:
        return
    excess_entries, excess_bytes = excess
    order = (_cache.c.last_used_at, _cache.c.project_id, _cache.c.key)
    ranked = select(
        _cache.c.project_id,
        _cache.c.key,
        func.row_number().over(order_by=order).label("n"),
        (func.sum(_cache.c.size).over(order_by=order) - _cache.c.size).label("before"),
    ).subquery()
    oldest = select(ranked.c.project_id, ranked.c.key).where(
        or_(ranked.c.n <= excess_entries, ranked.c.before < excess_bytes)
    )
    pk = tuple_(_cache.c.project_id, _cache.c.key)
    free = select(_cache.c.project_id, _cache.c.key).where(pk.in_(oldest))
    await conn.execute(delete(_cache).where(pk.in_(free.with_for_update(skip_locked=True))))


class SqlRunSink:
    """Collects outcomes; a background task writes them every ``interval`` seconds, and a
    full batch is written at once (the recording worker waits, which bounds memory).

    No write is ever cut off by a cancellation: a worker cancelled while its batch is being
    written (the sweep cancelled) stops waiting, but the write goes on to its commit. Cut off
    mid-transaction, it would lose its batch, and on SQLite its connection could keep the
    write lock, so that every other writer, this sweep's last one included, waits out the
    busy timeout and fails."""

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
        self._full: set[asyncio.Task[None]] = set()
        """Full batches' writes in flight, awaited by ``flush`` whoever stopped waiting."""

    async def record(self, outcome: RunOutcome) -> None:
        self._pending.append(outcome)
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_periodically())
        if len(self._pending) >= self._batch_size:
            write = asyncio.create_task(self._write())
            self._full.add(write)
            write.add_done_callback(self._full.discard)
            await asyncio.shield(write)

    async def _write_periodically(self) -> None:
        # Never cancelled: a write cut off mid-transaction would lose its batch.
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            await self._write()

    async def flush(self) -> None:
        """Write everything recorded so far and stop the background writer."""
        for write in list(self._full):
            await write
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
                "sanitized": o.sanitized,
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
