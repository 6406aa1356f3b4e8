"""An adaptive search's budget: calls, dollars and tokens, checked before every provider call.

The search must never spend more than its budget, so each call reserves what it may cost
before it is made (its prompt's tokens, and its ``max_tokens`` or else the longest answer seen
from that model so far, priced with the providers section's prices) and is refused with
``SpendingExhausted`` when that would cross a limit; once answered, the reservation is
replaced by what the call really cost. Answers from the cache never reach the caller, so they
cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from promptlooper.sweeps.adapters.base import AdapterResponse
from promptlooper.sweeps.engine.budget import count_tokens
from promptlooper.sweeps.engine.runner import ModelCaller


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


class SpendingLimit:
    """What has been spent (and reserved by calls in flight) against ``limits``."""

    def __init__(self, limits: Limits, spent: Spend | None = None) -> None:
        self.limits = limits
        self.spent = spent or Spend()
        self._reserved = Spend()
        self.exhausted = False

    def reserve(self, estimate: Spend) -> None:
        if not self.limits.allows(self.spent + self._reserved + estimate):
            self.exhausted = True
            raise SpendingExhausted(f"the search's budget ({self.describe()}) is spent")
        self._reserved = self._reserved + estimate

    def settle(self, estimate: Spend, actual: Spend) -> None:
        self._reserved = self._reserved - estimate
        self.spent = self.spent + actual

    def describe(self) -> str:
        return self.limits.describe(self.spent)


class BudgetedCaller:
    """A ``ModelCaller`` that makes a call only when the budget can pay for it."""

    def __init__(self, caller: ModelCaller, limit: SpendingLimit) -> None:
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
        self.limit.reserve(estimate)
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
