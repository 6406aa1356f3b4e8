"""Sweeps on a Ray cluster: the driver keeps the database, the cluster makes the calls.

The driver (the CLI or the server) reads pending runs as it does in process and hands them, a
batch at a time, to Ray tasks. A task renders, calls, scores and caches exactly as
``execute`` does in process (it runs ``execute`` itself over its batch) and sends the outcomes
back; the driver writes them through the same sink. A batch whose worker or node dies is run
again elsewhere, by Ray's own task retries and then by the driver; only the attempt that
returns is recorded, and the sink's writes are idempotent, so no run is lost or written
twice. Runs in flight when the driver itself dies stay pending, and ``sweep resume`` runs them.

Provider limits, and an adaptive search's budget, hold across the cluster through the
execution's coordinator actor (``coordinator.py``), which also knows the batches in flight
that ``cluster_status`` reports; each batch sends back what it spent, so a search steps on
with the totals it would have in one process.
A sweep on the cluster publishes the run events a sweep in process does: a batch sends its
runs' starts and stages to the coordinator as they happen, the driver publishes them, and
announces each run's end once the batch's outcomes, those recorded, are back.

Importing this module imports Ray; nothing else in the package does until a Ray address is
configured.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import uuid
from collections import Counter
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import ray
from ray.exceptions import RayError, RayTaskError

from promptlooper.events import EventBus
from promptlooper.raycluster import NAMESPACE, connect
from promptlooper.sweeps.adapters.base import ProviderConfig
from promptlooper.sweeps.engine.cache import CachedResponse, ResponseCache
from promptlooper.sweeps.engine.coordinator import (
    COORDINATOR_PREFIX,
    ClusterBudget,
    cluster_limits,
    start_coordinator,
)
from promptlooper.sweeps.engine.executor import (
    Progress,
    Providers,
    execute,
    task_stream,
)
from promptlooper.sweeps.engine.persistence import RunOutcome, RunSink
from promptlooper.sweeps.engine.runner import RunTask
from promptlooper.sweeps.engine.spending import BudgetedCaller, Limits, Spend, SpendingLimit
from promptlooper.sweeps.scorers.base import ScorerContext
from promptlooper.sweeps.scorers.registry import create_scorer

logger = logging.getLogger(__name__)

TASK_RETRIES = 3
"""Ray runs a batch again this many times when its worker or node dies."""
RESUBMITS = 2
"""The driver submits a batch again this many times once Ray's retries are spent."""
RUNS_PER_SLOT = 4
"""A batch holds this many runs per concurrent call it makes: enough that the fixed cost of a
task is spread thin, few enough that a lost batch costs little to run again."""
MAX_BATCH = 2_000
RELAY_SECONDS = 0.25
"""How often a batch sends the run events it gathered, and the driver publishes those sent."""
RUN_ENDS = frozenset({"run.completed", "run.failed"})


@dataclass
class WorkerSetup:
    """What every batch of one execution needs besides its runs; put in the object store once."""

    providers: dict[str, ProviderConfig]
    scorers: list[tuple[str, str, dict[str, Any]]]
    """Each scorer's type, name and options: scorers are built where they run, on the
    worker's own providers (an LLM judge calls from there)."""
    weights: dict[str, float]
    allow_python: bool = False
    budget: Limits | None = None
    """An adaptive search's budget, held for the whole cluster by the coordinator."""


@dataclass
class BatchResult:
    batch_id: int
    node_id: str
    attempt: int
    """1 unless an earlier attempt was lost with its worker or node."""
    outcomes: list[RunOutcome]
    cache_entries: dict[str, CachedResponse]
    retries: int
    spent: Spend
    """The calls the batch made (an LLM judge's included), what they cost and their tokens."""
    spent_out: bool = False
    """The budget refused a call: the batch's runs not started were left pending."""


@dataclass
class ClusterStats:
    """What this process's executions did on the cluster."""

    batches_by_node: Counter[str] = field(default_factory=Counter)
    retried: int = 0
    """Batches that finished on a later attempt than their first."""
    resubmitted: int = 0
    """Batches the driver submitted again once Ray's own retries were spent."""


stats = ClusterStats()


class _BatchCache:
    """A batch's view of the cache: the entries the driver found for its first calls, and
    what the batch adds (sent back for the driver to store)."""

    def __init__(self, found: dict[str, CachedResponse]) -> None:
        self._found = found
        self.new: dict[str, CachedResponse] = {}

    async def get(self, key: str) -> CachedResponse | None:
        return self._found.get(key) or self.new.get(key)

    async def put(self, key: str, response: CachedResponse) -> None:
        self.new[key] = response


class _EventRelay:
    """The bus a batch's runs publish on: their starts and stages go to the coordinator every
    ``RELAY_SECONDS`` for the driver to publish. A run's end stays here: the driver announces
    it from the outcome it records, so that a run whose first attempt was lost with its node
    ends once."""

    def __init__(self, coordinator: Any) -> None:
        self.bus = EventBus()
        self.bus.subscribe(self._gather)
        self._coordinator = coordinator
        self._gathered: list[dict[str, Any]] = []

    def _gather(self, event: dict[str, Any]) -> None:
        if event["type"] not in RUN_ENDS:
            self._gathered.append(event)

    async def send(self) -> None:
        if self._gathered:
            events, self._gathered = self._gathered, []
            await self._coordinator.relay.remote(events)

    async def keep_sending(self) -> None:
        while True:
            await asyncio.sleep(RELAY_SECONDS)
            await self.send()


class _Collected:
    def __init__(self) -> None:
        self.outcomes: list[RunOutcome] = []

    async def record(self, outcome: RunOutcome) -> None:
        self.outcomes.append(outcome)

    async def flush(self) -> None:
        return None


async def _run_batch_here(
    batch_id: int,
    tasks: list[RunTask],
    setup: WorkerSetup,
    found: dict[str, CachedResponse] | None,
    concurrency: int,
    coordinator: Any,
    relaying: bool,
) -> BatchResult:
    node_id = ray.get_runtime_context().get_node_id()
    attempt = await coordinator.begin.remote(batch_id, node_id, len(tasks))
    limits = functools.partial(cluster_limits, coordinator, batch_id)
    providers = Providers(setup.providers, limits=limits)
    # The search's budget at the coordinator, or no limit: only to count what the batch spends.
    budget = (
        ClusterBudget(coordinator, setup.budget)
        if setup.budget is not None
        else SpendingLimit(Limits())
    )
    caller = BudgetedCaller(providers, budget)
    context = ScorerContext(complete=caller.complete, allow_python=setup.allow_python)
    scorers = [create_scorer(kind, name, options, context) for kind, name, options in setup.scorers]
    cache = _BatchCache(found) if found is not None else None
    collected = _Collected()
    relay = _EventRelay(coordinator) if relaying else None
    sending = asyncio.create_task(relay.keep_sending()) if relay is not None else None
    try:
        done = await execute(
            tasks,
            total=len(tasks),
            providers=providers,
            sink=collected,
            concurrency=concurrency,
            cache=cache,
            scorers=scorers,
            weights=setup.weights,
            bus=relay.bus if relay is not None else None,
            caller=caller,
        )
    finally:
        if sending is not None:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
        await providers.aclose()
    if isinstance(budget, ClusterBudget):
        await budget.settled()
    if relay is not None:
        await relay.send()  # before the outcomes: the driver publishes a run's end after these
    entries = cache.new if cache is not None else {}
    return BatchResult(
        batch_id,
        node_id,
        attempt,
        collected.outcomes,
        entries,
        providers.retries,
        budget.spent,
        done.spent_out,
    )


@ray.remote(max_retries=TASK_RETRIES)
def run_batch(
    batch_id: int,
    tasks: list[RunTask],
    setup: WorkerSetup,
    found: dict[str, CachedResponse] | None,
    concurrency: int,
    coordinator: Any,
    relaying: bool,
) -> BatchResult:
    """One batch of runs, on whichever node Ray picks (``setup`` arrives resolved);
    ``relaying``: its runs' events are sent on for the driver to publish."""
    return asyncio.run(
        _run_batch_here(batch_id, tasks, setup, found, concurrency, coordinator, relaying)
    )


def _shape(concurrency: int) -> tuple[int, int, int]:
    """Batches in flight, calls in flight per batch and runs per batch for ``concurrency``
    calls at once in all: a batch per CPU of the cluster, so every node works."""
    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    in_flight = max(1, min(concurrency, cpus))
    per_batch = max(1, concurrency // in_flight)
    return in_flight, per_batch, min(MAX_BATCH, per_batch * RUNS_PER_SLOT)


async def _take(source: AsyncIterator[RunTask], size: int) -> list[RunTask]:
    batch: list[RunTask] = []
    while len(batch) < size and (task := await anext(source, None)) is not None:
        batch.append(task)
    return batch


@dataclass
class _Batch:
    batch_id: int
    tasks: list[RunTask]
    found: dict[str, CachedResponse] | None
    submits: int = 0


async def execute_on_cluster(
    tasks: Iterable[RunTask] | AsyncIterable[RunTask],
    *,
    address: str,
    total: int,
    setup: WorkerSetup,
    sink: RunSink,
    concurrency: int,
    cache: ResponseCache | None = None,
    bus: EventBus | None = None,
    on_progress: Callable[[Progress, RunOutcome], None] | None = None,
    experiment_id: uuid.UUID | None = None,
    progress: Progress | None = None,
    limit: SpendingLimit | None = None,
) -> Progress:
    """``execute`` on the cluster at ``address``: the same outcomes, the same sink, the same
    progress; on cancellation the batches in flight are cancelled and their runs stay
    pending, everything already returned written first. A search that executes in steps
    passes its ``progress`` on, so the totals run across them, and its ``limit``, which is
    settled with what each batch spent."""
    # Joining takes seconds; in a thread, so that a server's event loop keeps answering.
    await asyncio.to_thread(connect, address)
    progress = Progress(total=total) if progress is None else progress
    in_flight, per_batch, batch_size = _shape(concurrency)
    budget = limit.limits if limit is not None and limit.limits != Limits() else None
    coordinator = start_coordinator(
        experiment_id,
        setup.providers,
        None if limit is None or budget is None else (budget, limit.spent),
    )
    setup_ref = ray.put(replace(setup, budget=budget))
    source = task_stream(tasks)
    numbers = itertools.count()
    running: dict[asyncio.Future[BatchResult], tuple[_Batch, Any]] = {}
    # A batch's outcomes are announced once the events it relayed are out, a poll that took
    # them included: a run's end comes after its start and stages, as in process.
    publishing = asyncio.Lock()

    async def publish_relayed() -> None:
        if bus is None:
            return
        async with publishing:
            for event in await coordinator.drain.remote():
                await bus.publish(event)

    async def keep_publishing() -> None:
        while True:
            await asyncio.sleep(RELAY_SECONDS)
            await publish_relayed()

    async def cache_hits(batch: list[RunTask]) -> dict[str, CachedResponse] | None:
        if cache is None:
            return None
        found = {}
        for task in batch:
            if task.use_cache and task.first_call is not None:
                key = task.first_call.key
                if (hit := await cache.get(key)) is not None:
                    found[key] = hit
        return found

    def submit(batch: _Batch) -> None:
        batch.submits += 1
        # Spread, not Ray's default of filling the driver's node first: a sweep's calls are
        # meant to use every node's connections and CPUs from its first batches on.
        relaying = bus is not None and bus.has_audience
        ref = run_batch.options(scheduling_strategy="SPREAD").remote(
            batch.batch_id, batch.tasks, setup_ref, batch.found, per_batch, coordinator, relaying
        )
        running[asyncio.wrap_future(ref.future())] = (batch, ref)

    async def write_ledger(limit: SpendingLimit) -> None:
        """Write the marks the coordinator's budget needs before its calls, as they come."""
        while True:
            mark = await coordinator.ledger_wanted.remote()
            try:
                await limit.write_ahead(mark)
            except Exception as exc:
                await coordinator.ledger_written.remote(str(exc))
                raise
            await coordinator.ledger_written.remote(None)

    async def fill() -> None:
        while (
            not progress.spent_out
            and len(running) < in_flight
            and (runs := await _take(source, batch_size))
        ):
            submit(_Batch(next(numbers), runs, await cache_hits(runs)))

    async def receive(result: BatchResult) -> None:
        stats.batches_by_node[result.node_id] += 1
        stats.retried += result.attempt > 1
        if limit is not None:
            limit.settle(Spend(), result.spent)
        progress.spent_out |= result.spent_out
        if cache is not None:
            for key, response in result.cache_entries.items():
                await cache.put(key, response)
        await publish_relayed()
        for outcome in result.outcomes:
            await sink.record(outcome)
            progress.count(outcome)
            await _announce(bus, experiment_id, outcome)
            if on_progress is not None:
                on_progress(progress, outcome)

    publisher = asyncio.create_task(keep_publishing()) if bus is not None else None
    ledger = None
    if limit is not None and budget is not None:
        ledger = asyncio.create_task(write_ledger(limit))
    try:
        await fill()
        while running:
            done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
            for future in done:
                batch, _ref = running.pop(future)
                try:
                    result = future.result()
                except RayTaskError:
                    raise  # the batch's own code failed: a bug, not a lost worker
                except RayError as exc:
                    if batch.submits > RESUBMITS:
                        raise
                    logger.warning("batch %s lost (%s); submitting it again", batch.batch_id, exc)
                    stats.resubmitted += 1
                    submit(batch)  # its next attempt gives back what this one held
                    continue
                coordinator.finish.remote(batch.batch_id)
                await receive(result)
            await fill()
        if ledger is not None and ledger.done() and (error := ledger.exception()) is not None:
            raise error  # the budget's ledger could not be written: the search stops here
    finally:
        for helper in (publisher, ledger):
            if helper is not None and not helper.done():
                helper.cancel()
                with contextlib.suppress(asyncio.CancelledError, RayError):
                    await helper
        for _batch, ref in running.values():
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        await sink.flush()
        with contextlib.suppress(Exception):
            ray.kill(coordinator)
    return progress


async def _announce(
    bus: EventBus | None, experiment_id: uuid.UUID | None, outcome: RunOutcome
) -> None:
    """``run.completed`` or ``run.failed``, as a run in process announces its end."""
    if bus is None or not bus.has_audience:
        return
    ids = {"run_id": str(outcome.run_id), "experiment_id": str(experiment_id)}
    if outcome.status == "completed":
        fields = {"weighted_score": outcome.weighted_score, "duration_ms": outcome.duration_ms}
        await bus.publish({"type": "run.completed", **ids, **fields})
    else:
        await bus.publish({"type": "run.failed", **ids, "error": outcome.error})


def cluster_status(address: str) -> dict[str, Any]:
    """The cluster's nodes and resources, the actors PromptLooper placed on it and the
    batches of every sweep executing on it (joining the cluster first if need be)."""
    connect(address)
    nodes = [
        {
            "node_id": node["NodeID"],
            "address": f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}",
            "alive": node["Alive"],
            "cpus": node["Resources"].get("CPU", 0),
            "gpus": node["Resources"].get("GPU", 0),
        }
        for node in ray.nodes()
    ]
    names = [
        actor["name"]
        for actor in ray.util.list_named_actors(all_namespaces=True)
        if actor["namespace"] == NAMESPACE
    ]
    sweeps = []
    for name in names:
        if not name.startswith(COORDINATOR_PREFIX):
            continue
        with contextlib.suppress(RayError, ValueError):
            handle = ray.get_actor(name, namespace=NAMESPACE)
            sweep = ray.get(handle.status.remote(), timeout=10)
            batches = sweep["in_flight"]
            sweep.update(
                batches_in_flight=len(batches), runs_in_flight=sum(b["runs"] for b in batches)
            )
            sweeps.append(sweep)
    return {
        "address": address,
        "nodes_alive": sum(node["alive"] for node in nodes),
        "nodes": nodes,
        "resources": ray.cluster_resources(),
        "available": ray.available_resources(),
        "actors": _placed(set(names)),
        "sweeps": sweeps,
    }


def _placed(names: set[str]) -> list[dict[str, Any]]:
    """PromptLooper's live actors (those named in its namespace) and where each runs, from
    the cluster's own table of actors: Ray's state API would need the dashboard, which a
    cluster need not run."""
    table = ray._private.state.actors()  # type: ignore[attr-defined]
    placed = [
        {
            "name": actor["Name"],
            "class": actor["ActorClassName"],
            "node_id": actor["Address"]["NodeID"],
            "pid": actor["Pid"],
        }
        for actor in table.values()
        if actor["Name"] in names and actor["State"] == "ALIVE"
    ]
    return sorted(placed, key=lambda actor: actor["name"])
