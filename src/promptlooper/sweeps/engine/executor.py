"""Runs many ``RunTask``s: bounded concurrency, per-provider limits, retries, cancellation.

A fixed pool of ``concurrency`` workers pulls tasks; each worker runs one run's stages in
order, so multi-stage pipelines stay parallel across runs. Every provider call passes its
provider's gate: a concurrency cap, a requests-per-minute limiter, a per-call timeout (of the
provider's time: the wait at the gate is not part of it), and retries with exponential backoff
and jitter on retryable failures, waiting ``Retry-After`` when the provider sends one.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from promptlooper.errors import Invalid, PromptLooperError
from promptlooper.events import EventBus
from promptlooper.sweeps.adapters.base import (
    Adapter,
    AdapterError,
    AdapterResponse,
    ProviderConfig,
)
from promptlooper.sweeps.adapters.registry import (
    create_adapter,
    load_adapter_module,
    parse_model_ref,
)
from promptlooper.sweeps.engine.cache import ResponseCache
from promptlooper.sweeps.engine.persistence import RunOutcome, RunSink
from promptlooper.sweeps.engine.runner import ModelCaller, RunTask, run_single
from promptlooper.sweeps.engine.spending import SpendingExhausted
from promptlooper.sweeps.scorers.base import Scorer

MAX_RETRY_AFTER = 120.0
_backoff = wait_exponential_jitter(multiplier=0.25, max=20, jitter=0.5)


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, AdapterError) and error.retry_after is not None:
        return min(error.retry_after, MAX_RETRY_AFTER)
    return _backoff(state)


def _retryable(error: BaseException) -> bool:
    return isinstance(error, AdapterError) and error.retryable


def rate_limiter(per_minute: float) -> AsyncLimiter:
    """At most ``per_minute`` requests a minute, in bursts of at most one second's worth
    (a 60,000-per-minute limit must not allow 60,000 at once)."""
    if per_minute >= 60:
        return AsyncLimiter(per_minute / 60, 1)
    return AsyncLimiter(1, 60 / per_minute)


class RateLimiter(Protocol):
    async def acquire(self) -> None: ...


Limits = tuple[AbstractAsyncContextManager[Any] | None, RateLimiter | None]
"""A provider's concurrency slot (held during a call) and rate limiter (acquired per attempt)."""


def local_limits(config: ProviderConfig) -> Limits:
    """The provider's limits held in this process: right for one process's sweep."""
    return (
        asyncio.Semaphore(config.concurrency) if config.concurrency else None,
        rate_limiter(config.rate_limit) if config.rate_limit else None,
    )


@dataclass
class _Gate:
    adapter: Adapter
    config: ProviderConfig
    semaphore: AbstractAsyncContextManager[Any] | None
    limiter: RateLimiter | None


class Providers:
    """The ``ModelCaller`` the runner uses: adapters built from provider configs, each
    behind its gate. Adapters are created on first use and closed by ``aclose``; their modules
    are imported here, before any run starts, so that the CLI can freeze them with the rest of
    its start-up instead of having the collector rescan them during the sweep. ``limits``
    builds each provider's gate: a sweep spread over processes shares one set of limits."""

    def __init__(
        self,
        configs: Mapping[str, ProviderConfig],
        *,
        limits: Callable[[ProviderConfig], Limits] = local_limits,
    ) -> None:
        self.configs = dict(configs)
        for config in self.configs.values():
            load_adapter_module(config.type)
        self._limits = limits
        self._gates: dict[str, _Gate] = {}
        self.retries = 0

    def _config(self, provider: str) -> ProviderConfig:
        config = self.configs.get(provider)
        if config is None:
            raise Invalid(f"provider {provider!r} is not configured")
        return config

    def _gate(self, provider: str) -> _Gate:
        gate = self._gates.get(provider)
        if gate is None:
            config = self._config(provider)
            semaphore, limiter = self._limits(config)
            gate = _Gate(create_adapter(config), config, semaphore, limiter)
            self._gates[provider] = gate
        return gate

    async def _attempt(
        self,
        gate: _Gate,
        model: str,
        prompt: str,
        params: dict[str, Any],
        system: str | None,
        seconds: float,
    ) -> AdapterResponse:
        """One call. Its timeout counts the provider's time only: waiting for the gate (the
        rate limiter, a concurrency slot) and for the adapter's turn (a local model's worker,
        which answers one call at a time and loads the model first) is this side's queue,
        which a busy machine or a long sweep lengthens, and a call that timed out there would
        be retried into the same queue."""
        if gate.limiter is not None:
            await gate.limiter.acquire()
        turn = getattr(gate.adapter, "turn", None)
        async with (
            gate.semaphore or contextlib.nullcontext(),
            turn(model) if turn is not None else contextlib.nullcontext(),
        ):
            try:
                async with asyncio.timeout(seconds):
                    return await gate.adapter.complete(prompt, model, params, system=system)
            except TimeoutError as exc:
                raise AdapterError(
                    f"{gate.config.name} timed out after {seconds:g} s", retryable=True
                ) from exc
            except (AdapterError, PromptLooperError, SpendingExhausted):
                raise
            except Exception as exc:
                # An adapter's own bug, or a parameter it cannot take, fails the run it was
                # making, with the error on the run, not the whole sweep.
                raise AdapterError(
                    f"{gate.config.name} failed: {type(exc).__name__}: {exc}", retryable=False
                ) from exc

    async def complete(
        self,
        model_ref: str,
        prompt: str,
        params: dict[str, Any],
        system: str | None,
        *,
        call_timeout: float | None = None,
        max_retries: int | None = None,
    ) -> AdapterResponse:
        provider, model = parse_model_ref(model_ref)
        gate = self._gate(provider)
        seconds = gate.config.timeout if call_timeout is None else call_timeout
        retries = gate.config.max_retries if max_retries is None else max_retries
        try:
            return await self._attempt(gate, model, prompt, params, system, seconds)
        except AdapterError as error:
            if not error.retryable or retries == 0:
                raise
            failure: AdapterError | None = error
        # Most calls succeed at once; tenacity (~35 µs a call to set up) paces the others.
        # Its first attempt replays the failure, so waits and attempt counts are as if it had
        # made every attempt.
        retrying = AsyncRetrying(
            stop=stop_after_attempt(retries + 1),
            wait=_wait,
            retry=retry_if_exception(_retryable),
            reraise=True,
            before_sleep=self._count_retry,
        )
        async for attempt in retrying:
            with attempt:
                if failure is not None:
                    replayed, failure = failure, None
                    raise replayed
                return await self._attempt(gate, model, prompt, params, system, seconds)
        raise AssertionError("unreachable: tenacity reraises the last error")

    def _count_retry(self, _state: RetryCallState) -> None:
        self.retries += 1

    def cost(self, model_ref: str, tokens_in: int, tokens_out: int) -> float:
        provider, model = parse_model_ref(model_ref)
        config = self.configs.get(provider)
        return config.cost(model, tokens_in, tokens_out) if config else 0.0

    def identify(self, model_ref: str) -> tuple[str, dict[str, Any]]:
        provider, model = parse_model_ref(model_ref)
        return model, self._config(provider).identity()

    async def aclose(self) -> None:
        for gate in self._gates.values():
            with contextlib.suppress(Exception):
                await gate.adapter.aclose()
        self._gates.clear()


@dataclass
class Progress:
    """Running totals, handed to the progress callback after every run."""

    total: int
    done: int = 0
    failed: int = 0
    cached: int = 0
    started: float = field(default_factory=time.perf_counter)
    note: str = ""
    """What an adaptive search is doing (its slice, eliminations, budget used)."""
    spent_out: bool = False
    """A budget stopped the work: tasks not started were left pending."""

    @property
    def finished(self) -> int:
        return self.done + self.failed

    def count(self, outcome: RunOutcome) -> None:
        """Add a recorded run: done (and whether from the cache) or failed."""
        if outcome.status == "completed":
            self.done += 1
            self.cached += outcome.cached
        else:
            self.failed += 1

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    @property
    def rate(self) -> float:
        return self.finished / self.elapsed if self.elapsed > 0 else 0.0


async def task_stream(
    tasks: Iterable[RunTask] | AsyncIterable[RunTask],
) -> AsyncIterator[RunTask]:
    """``tasks`` read one at a time, whether they come from a list or a paged reader."""
    if isinstance(tasks, AsyncIterable):
        async for task in tasks:
            yield task
    else:
        for task in tasks:
            yield task


async def execute(
    tasks: Iterable[RunTask] | AsyncIterable[RunTask],
    *,
    total: int,
    providers: Providers,
    sink: RunSink,
    concurrency: int,
    cache: ResponseCache | None = None,
    scorers: Sequence[Scorer] = (),
    weights: Mapping[str, float] | None = None,
    bus: EventBus | None = None,
    on_progress: Callable[[Progress, RunOutcome], None] | None = None,
    caller: ModelCaller | None = None,
    progress: Progress | None = None,
) -> Progress:
    """Run every task and hand each outcome to ``sink``; returns the final totals. ``tasks``
    may be read as they are needed (an async iterable), ``total`` of them.

    Cancelling the caller cancels the workers: runs in flight are not recorded (they stay
    pending and run again on resume), and everything already finished is flushed first.
    ``caller`` (``providers`` by default) makes the calls; when it refuses one for want of
    budget, that run stays pending and no further task starts. A search that executes in
    steps passes its ``progress`` on, so the totals run across them.
    """
    progress = Progress(total=total) if progress is None else progress
    queue = task_stream(tasks)
    taking = asyncio.Lock()  # one worker at a time asks the source, which may read a page

    async def worker() -> None:
        while True:
            async with taking:
                task = None if progress.spent_out else await anext(queue, None)
            if task is None:
                return
            try:
                outcome = await run_single(
                    task,
                    caller or providers,
                    cache=cache,
                    scorers=scorers,
                    weights=weights,
                    bus=bus,
                )
            except SpendingExhausted:
                progress.spent_out = True
                return
            await sink.record(outcome)
            progress.count(outcome)
            if on_progress is not None:
                on_progress(progress, outcome)

    try:
        async with asyncio.TaskGroup() as group:
            for _ in range(max(1, min(concurrency, total))):
                group.create_task(worker())
    finally:
        # Also after a cancellation: what finished is written before the error propagates.
        await sink.flush()
    return progress
