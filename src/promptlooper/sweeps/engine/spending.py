"""An adaptive search's budget: calls, dollars and tokens, checked before every provider call.

The search must never spend more than its budget, so each call reserves what it may cost
before it is made (its prompt's tokens, and its ``max_tokens`` or else the longest answer seen
from that model so far, priced with the providers section's prices) and is refused with
``SpendingExhausted`` when that would cross a limit; once answered, the reservation is
replaced by what the call really cost. Answers from the cache never reach the caller, so they
cost nothing. An LLM judge's calls go through the same caller, so they count too.

What a process spent dies with it, including calls in flight and runs not yet written, so a
search keeps a ledger (``SpendLedger``, the experiment's row): before a call whose
reservation the ledger does not cover, it writes a mark a fiftieth of each limit ahead, and
the call waits for that write. A search resumed after a crash starts from the mark, which is
at least everything the dead process paid for; a search that ends normally writes what it
really spent (``close``). A crash thus costs at most that fiftieth of the budget, never a
crossing, for about fifty writes per search.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from promptlooper.sweeps.adapters.base import AdapterResponse
from promptlooper.sweeps.engine.budget import count_tokens

if TYPE_CHECKING:
    from promptlooper.sweeps.engine.runner import ModelCaller

LEDGER_STEPS = 50
"""How far ahead the ledger is written: a fiftieth of each limit per write."""


class SpendingExhausted(Exception):
    """The next call would cross the search's budget: the run stays pending, the search
    stops handing out work."""


@dataclass(slots=True)
class Spend:
    calls: int = 0
    usd: float = 0.0
    tokens: int = 0

    def __add__(self, other: Spend) -> Spend:
        return Spend(self.calls + other.calls, self.usd + other.usd, self.tokens + other.tokens)

    def __sub__(self, other: Spend) -> Spend:
        return Spend(self.calls - other.calls, self.usd - other.usd, self.tokens - other.tokens)


@dataclass(frozen=True, slots=True)
class Limits:
    """The budget; None for a limit not set."""

    calls: int | None = None
    usd: float | None = None
    tokens: int | None = None

    @classmethod
    def of(cls, budget: Any) -> Limits:
        """From a spec's ``search.budget`` (None: no limit)."""
        if budget is None:
            return cls()
        return cls(calls=budget.calls, usd=budget.usd, tokens=budget.tokens)

    def allows(self, spend: Spend) -> bool:
        return (
            (self.calls is None or spend.calls <= self.calls)
            and (self.usd is None or spend.usd <= self.usd + 1e-12)
            and (self.tokens is None or spend.tokens <= self.tokens)
        )

    def covers(self, written: Spend, needed: Spend) -> bool:
        """Whether a ledger holding ``written`` covers ``needed`` in every limit set."""
        return (
            (self.calls is None or needed.calls <= written.calls)
            and (self.usd is None or needed.usd <= written.usd + 1e-12)
            and (self.tokens is None or needed.tokens <= written.tokens)
        )

    def ahead(self, needed: Spend) -> Spend:
        """The mark written to cover ``needed`` (within the limits): a step of each limit
        ahead, so that most calls find it already covered."""
        return Spend(
            calls=needed.calls
            if self.calls is None
            else max(needed.calls, min(self.calls, needed.calls + -(-self.calls // LEDGER_STEPS))),
            usd=needed.usd
            if self.usd is None
            else max(needed.usd, min(self.usd, needed.usd + self.usd / LEDGER_STEPS)),
            tokens=needed.tokens
            if self.tokens is None
            else max(
                needed.tokens, min(self.tokens, needed.tokens + -(-self.tokens // LEDGER_STEPS))
            ),
        )

    def describe(self, spent: Spend) -> str:
        """What is used of each limit set, e.g. ``calls 1,200/4,800``."""
        parts = []
        if self.calls is not None:
            parts.append(f"calls {spent.calls:,}/{self.calls:,}")
        if self.usd is not None:
            parts.append(f"${spent.usd:.4f}/${self.usd:g}")
        if self.tokens is not None:
            parts.append(f"tokens {spent.tokens:,}/{self.tokens:,}")
        return ", ".join(parts) or f"calls {spent.calls:,}"


class SpendLedger(Protocol):
    """Where a search's spending survives its process."""

    async def write(self, spend: Spend) -> None: ...


class Budget(Protocol):
    """What ``BudgetedCaller`` reserves calls against: a ``SpendingLimit`` here, or one held
    for a whole Ray cluster by a sweep's coordinator."""

    limits: Limits

    async def reserve(self, estimate: Spend) -> None: ...

    def settle(self, estimate: Spend, actual: Spend) -> None: ...


class SpendingLimit:
    """What has been spent (and reserved by calls in flight) against ``limits``; with a
    ``ledger``, ``spent`` starts from what it holds."""

    def __init__(
        self, limits: Limits, spent: Spend | None = None, ledger: SpendLedger | None = None
    ) -> None:
        self.limits = limits
        self.spent = spent or Spend()
        self._reserved = Spend()
        self.exhausted = False
        self._ledger = ledger
        self._written = self.spent
        self._writing = asyncio.Lock()

    async def reserve(self, estimate: Spend) -> None:
        """Reserve ``estimate`` for a call about to be made; returns once the ledger covers
        it. ``SpendingExhausted`` when it could cross a limit."""
        needed = self.spent + self._reserved + estimate
        if not self.limits.allows(needed):
            self.exhausted = True
            raise SpendingExhausted(f"the search's budget ({self.describe()}) is spent")
        self._reserved = self._reserved + estimate
        if self._ledger is None or self.limits.covers(self._written, needed):
            return
        try:
            async with self._writing:
                needed = self.spent + self._reserved
                if not self.limits.covers(self._written, needed):
                    mark = self.limits.ahead(needed)
                    await self._ledger.write(mark)
                    self._written = mark
        except BaseException:
            self._reserved = self._reserved - estimate
            raise

    def settle(self, estimate: Spend, actual: Spend) -> None:
        self._reserved = self._reserved - estimate
        self.spent = self.spent + actual

    async def write_ahead(self, mark: Spend) -> None:
        """Write ``mark`` to the ledger for calls reserved elsewhere (on a Ray cluster, by
        the coordinator), before they are made."""
        if self._ledger is not None:
            async with self._writing:
                await self._ledger.write(mark)
                self._written = mark

    async def close(self) -> None:
        """Once no call is in flight: the ledger gets what was really spent, and the part
        of the budget written ahead is free again."""
        if self._ledger is not None and self._reserved.calls == 0:
            async with self._writing:
                await self._ledger.write(self.spent)
                self._written = self.spent

    def describe(self) -> str:
        return self.limits.describe(self.spent)


class BudgetedCaller:
    """A ``ModelCaller`` that makes a call only when the budget can pay for it."""

    def __init__(self, caller: ModelCaller, limit: Budget) -> None:
        self._caller = caller
        self.limit = limit
        self._longest: dict[str, int] = {}

    def _estimate(
        self, model_ref: str, prompt: str, params: Mapping[str, Any], system: str | None
    ) -> Spend:
        limits = self.limit.limits
        if limits.usd is None and limits.tokens is None:
            return Spend(calls=1)
        model = model_ref.partition(":")[2] or model_ref
        text = prompt if system is None else f"{system}\n{prompt}"
        # Providers count tokens their own way; a word is at least one token in all of them.
        tokens_in = max(count_tokens(text, model), len(text.split()))
        cap = params.get("max_tokens")
        tokens_out = cap if isinstance(cap, int) else self._longest.get(model_ref, 0)
        usd = self._caller.cost(model_ref, tokens_in, tokens_out)
        return Spend(calls=1, usd=usd, tokens=tokens_in + tokens_out)

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
        estimate = self._estimate(model_ref, prompt, params, system)
        await self.limit.reserve(estimate)
        actual = Spend(calls=1)
        try:
            response = await self._caller.complete(
                model_ref,
                prompt,
                params,
                system,
                call_timeout=call_timeout,
                max_retries=max_retries,
            )
            tokens = response.tokens_in + response.tokens_out
            usd = self._caller.cost(model_ref, response.tokens_in, response.tokens_out)
            actual = Spend(calls=1, usd=usd, tokens=tokens)
            self._longest[model_ref] = max(self._longest.get(model_ref, 0), response.tokens_out)
            return response
        finally:
            self.limit.settle(estimate, actual)

    def cost(self, model_ref: str, tokens_in: int, tokens_out: int) -> float:
        return self._caller.cost(model_ref, tokens_in, tokens_out)

    def identify(self, model_ref: str) -> tuple[str, dict[str, Any]]:
        return self._caller.identify(model_ref)
