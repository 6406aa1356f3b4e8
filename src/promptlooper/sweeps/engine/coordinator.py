"""One sweep execution's coordinator on the Ray cluster: provider limits and batches in flight.

Every batch of one execution asks this actor, pinned to the driver's node, for its concurrency
slots and rate-limit permits, so a provider's limits hold over all nodes together. Slots are
held in a batch's name: those an attempt that died still held are given back when the batch
begins again or ends. The actor also knows which batches are running where, which
``promptlooper ray status`` and ``/api/health`` show, and holds the run events batches send
until the driver publishes them.

For an adaptive search with a budget it also holds the search's ``SpendingLimit`` for the
step: every batch's calls reserve against it, so the budget holds over all nodes together.
Its ledger is the driver's: a mark that must be written before a call is handed to the
driver (``ledger_wanted``), which writes it to the database and says so
(``ledger_written``); until then the call waits, as it does in one process.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import Mapping
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from promptlooper.raycluster import NAMESPACE
from promptlooper.sweeps.adapters.base import ProviderConfig
from promptlooper.sweeps.engine.executor import Limits, rate_limiter
from promptlooper.sweeps.engine.spending import Limits as BudgetLimits
from promptlooper.sweeps.engine.spending import Spend, SpendingExhausted, SpendingLimit

COORDINATOR_PREFIX = "sweep-"


class _DriverLedger:
    """A ``SpendLedger`` whose writes the driver makes: one mark at a time (the limit writes
    under a lock), handed over and waited for."""

    def __init__(self) -> None:
        self.wanted: asyncio.Queue[Spend] = asyncio.Queue()
        self.written: asyncio.Future[str | None] | None = None

    async def write(self, spend: Spend) -> None:
        self.written = asyncio.get_running_loop().create_future()
        await self.wanted.put(spend)
        error = await self.written
        if error is not None:
            raise SpendingExhausted(f"the search's spending ledger could not be written: {error}")


@ray.remote(num_cpus=0, max_concurrency=10_000)
class SweepCoordinator:
    """One execution's provider limits and batches in flight, shared by its every batch."""

    def __init__(
        self,
        experiment_id: str,
        limits: dict[str, tuple[int | None, float | None]],
        budget: tuple[BudgetLimits, Spend] | None = None,
    ):
        self.experiment_id = experiment_id
        self._ledger = _DriverLedger()
        self._budget = SpendingLimit(*budget, self._ledger) if budget is not None else None
        self.started = time.time()
        self._slots = {p: asyncio.Semaphore(c) for p, (c, _) in limits.items() if c}
        self._rates = {p: rate_limiter(r) for p, (_, r) in limits.items() if r}
        self._held: dict[int, Counter[str]] = {}
        self._batches: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self.finished = 0

    def _give_back(self, batch_id: int) -> None:
        for provider, count in self._held.pop(batch_id, Counter()).items():
            for _ in range(count):
                self._slots[provider].release()

    async def begin(self, batch_id: int, node_id: str, runs: int) -> int:
        """A batch starts (again): whatever an earlier attempt held is free again. Returns
        which attempt this is."""
        self._give_back(batch_id)
        attempt = self._batches.get(batch_id, {}).get("attempt", 0) + 1
        self._batches[batch_id] = {
            "batch": batch_id,
            "node_id": node_id,
            "runs": runs,
            "attempt": attempt,
            "since": time.time(),
        }
        return attempt

    async def finish(self, batch_id: int) -> None:
        self._give_back(batch_id)
        if self._batches.pop(batch_id, None) is not None:
            self.finished += 1

    async def relay(self, events: list[dict[str, Any]]) -> None:
        """Run events from a batch, kept for the driver's next ``drain``."""
        self._events.extend(events)

    async def drain(self) -> list[dict[str, Any]]:
        events, self._events = self._events, []
        return events

    async def reserve(self, estimate: Spend) -> str | None:
        """Reserve a call's estimate against the search's budget: None once the driver's
        ledger covers it, or why the call must not be made."""
        assert self._budget is not None
        try:
            await self._budget.reserve(estimate)
        except SpendingExhausted as exc:
            return str(exc)
        return None

    async def settle(self, estimate: Spend, actual: Spend) -> None:
        assert self._budget is not None
        self._budget.settle(estimate, actual)

    async def ledger_wanted(self) -> Spend:
        """The next mark the driver must write (waits until one is needed)."""
        return await self._ledger.wanted.get()

    async def ledger_written(self, error: str | None) -> None:
        if self._ledger.written is not None and not self._ledger.written.done():
            self._ledger.written.set_result(error)

    async def rate(self, provider: str) -> None:
        await self._rates[provider].acquire()

    async def take_slot(self, provider: str, batch_id: int) -> None:
        await self._slots[provider].acquire()
        self._held.setdefault(batch_id, Counter())[provider] += 1

    async def give_slot(self, provider: str, batch_id: int) -> None:
        held = self._held.get(batch_id)
        if held and held[provider] > 0:
            held[provider] -= 1
            self._slots[provider].release()

    async def status(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "node_id": ray.get_runtime_context().get_node_id(),
            "started": self.started,
            "batches_finished": self.finished,
            "in_flight": sorted(self._batches.values(), key=lambda b: b["batch"]),
        }


class _ClusterRate:
    def __init__(self, coordinator: Any, provider: str) -> None:
        self._coordinator, self._provider = coordinator, provider

    async def acquire(self) -> None:
        await self._coordinator.rate.remote(self._provider)


class _ClusterSlot:
    def __init__(self, coordinator: Any, provider: str, batch_id: int) -> None:
        self._coordinator, self._provider, self._batch = coordinator, provider, batch_id

    async def __aenter__(self) -> None:
        await self._coordinator.take_slot.remote(self._provider, self._batch)

    async def __aexit__(self, *_: object) -> None:
        await self._coordinator.give_slot.remote(self._provider, self._batch)


def cluster_limits(coordinator: Any, batch_id: int, config: ProviderConfig) -> Limits:
    return (
        _ClusterSlot(coordinator, config.name, batch_id) if config.concurrency else None,
        _ClusterRate(coordinator, config.name) if config.rate_limit else None,
    )


class ClusterBudget:
    """A batch's side of the search's budget (a ``spending.Budget``): each call reserves at
    the coordinator and settles there; what the batch spent is counted here too."""

    def __init__(self, coordinator: Any, limits: BudgetLimits) -> None:
        self.limits = limits
        self.spent = Spend()
        self._coordinator = coordinator
        self._settling: list[Any] = []

    async def reserve(self, estimate: Spend) -> None:
        refused = await self._coordinator.reserve.remote(estimate)
        if refused is not None:
            raise SpendingExhausted(refused)

    def settle(self, estimate: Spend, actual: Spend) -> None:
        self.spent = self.spent + actual
        self._settling.append(self._coordinator.settle.remote(estimate, actual))

    async def settled(self) -> None:
        """Once every settlement has reached the coordinator: before the batch returns, so
        the next step's reservations see all of this one's spending."""
        await asyncio.gather(*self._settling)


def start_coordinator(
    experiment_id: uuid.UUID | None,
    providers: Mapping[str, ProviderConfig],
    budget: tuple[BudgetLimits, Spend] | None = None,
) -> Any:
    """The execution's coordinator, on the driver's own node: it lives and dies with it.
    ``budget``: a search's limits and what it has spent so far."""
    label = str(experiment_id or uuid.uuid4())
    limits = {p.name: (p.concurrency, p.rate_limit) for p in providers.values()}
    here = ray.get_runtime_context().get_node_id()
    return SweepCoordinator.options(  # type: ignore[attr-defined]
        name=f"{COORDINATOR_PREFIX}{label}-{uuid.uuid4().hex[:8]}",
        namespace=NAMESPACE,
        scheduling_strategy=NodeAffinitySchedulingStrategy(here, soft=False),
    ).remote(label, limits, budget)
