"""The search budget's arithmetic: reserve before a call, settle after, refuse what could cross."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from promptlooper.sweeps.adapters.base import AdapterResponse
from promptlooper.sweeps.engine.spending import (
    BudgetedCaller,
    Limits,
    Spend,
    SpendingExhausted,
    SpendingLimit,
)


class Priced:
    """A caller answering ``words`` words, priced at $1 per token in or out."""

    def __init__(self, words: int) -> None:
        self.words = words
        self.calls = 0

    async def complete(self, model_ref: str, prompt: str, params: dict, system, **_: Any):
        self.calls += 1
        return AdapterResponse(
            text="x " * self.words, tokens_in=len(prompt.split()), tokens_out=self.words
        )

    def cost(self, model_ref: str, tokens_in: int, tokens_out: int) -> float:
        return float(tokens_in + tokens_out)

    def identify(self, model_ref: str):
        return model_ref, {}


async def _spend(caller: BudgetedCaller, times: int, params: dict) -> int:
    made = 0
    for _ in range(times):
        try:
            await caller.complete("p:m", "one two three", params, None)
        except SpendingExhausted:
            break
        made += 1
    return made


@pytest.mark.parametrize(
    ("limits", "made"),
    [
        (Limits(calls=3), 3),
        (Limits(usd=40.0), 3),  # each call: 3 tokens in + max_tokens 10 = $13 reserved
        (Limits(tokens=26), 2),
    ],
)
def test_a_call_that_could_cross_the_budget_is_refused(limits: Limits, made: int):
    inner = Priced(words=10)
    caller = BudgetedCaller(inner, SpendingLimit(limits))

    assert asyncio.run(_spend(caller, 10, {"max_tokens": 10})) == made
    assert inner.calls == made
    assert caller.limit.exhausted
    assert limits.allows(caller.limit.spent)


def test_what_was_spent_before_counts():
    limit = SpendingLimit(Limits(calls=5), Spend(calls=4))
    caller = BudgetedCaller(Priced(words=1), limit)

    assert asyncio.run(_spend(caller, 10, {})) == 1
    assert limit.describe() == "calls 5/5"


class Ledger:
    """A ledger that remembers its writes."""

    def __init__(self) -> None:
        self.writes: list[Spend] = []

    async def write(self, spend: Spend) -> None:
        self.writes.append(spend)


def test_the_ledger_covers_every_call_before_it_is_made_and_ends_exact():
    ledger = Ledger()
    limit = SpendingLimit(Limits(calls=100, usd=1000.0), ledger=ledger)
    inner = Priced(words=10)
    covered = []

    class Watching(Priced):
        async def complete(self, *args: Any, **kwargs: Any):
            covered.append(ledger.writes[-1].calls >= limit.spent.calls + 1)
            return await inner.complete(*args, **kwargs)

    caller = BudgetedCaller(Watching(words=10), limit)

    async def spend_then_close() -> int:
        made = await _spend(caller, 10, {"max_tokens": 10})
        await limit.close()
        return made

    assert asyncio.run(spend_then_close()) == 10
    assert all(covered)
    # Written a fiftieth of the budget ahead: every other call, not every call.
    assert len(ledger.writes) == 6
    assert ledger.writes[-1] == limit.spent == Spend(calls=10, usd=130.0, tokens=130)
