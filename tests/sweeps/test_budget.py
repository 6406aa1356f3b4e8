"""Budget fields in stage params: enforced by the engine, never sent to the model."""

from __future__ import annotations

import asyncio

import pytest

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters import AdapterError, AdapterResponse, ProviderConfig
from promptlooper.sweeps.engine.budget import Budget, count_tokens, split_params
from promptlooper.sweeps.engine.executor import Providers
from promptlooper.sweeps.engine.runner import StageDef, run_single
from promptlooper.sweeps.plan import compile_plan
from promptlooper.sweeps.spec import parse_spec
from tests.sweeps.test_runner import adapter_of, providers, task


def test_split_params_keeps_model_params_and_takes_out_budget_fields():
    forwarded, budget = split_params(
        {"temperature": 0.2, "max_tokens": 50, "timeout_seconds": 2.5, "token_budget": 100.0}
    )

    assert forwarded == {"temperature": 0.2, "max_tokens": 50}
    assert budget == Budget(timeout_seconds=2.5, token_budget=100)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"max_retries": -1}, "max_retries: must be at least 0"),
        ({"token_budget": 1.5}, "token_budget: must be a whole number"),
        ({"input_token_limit": "many"}, "input_token_limit: must be a number"),
        ({"timeout_seconds": True}, "timeout_seconds: must be a number"),
    ],
)
def test_bad_budget_values_are_refused_with_the_field(params, message):
    with pytest.raises(Invalid, match=message):
        split_params(params)


def test_token_counts_use_the_openai_tokenizer():
    assert count_tokens("Hello world", "gpt-4") == 2  # cl100k_base: [9906, 1917]
    assert count_tokens("<|endoftext|>", "unknown-model") > 1  # plain text, not special


async def test_budget_fields_are_not_sent_to_the_provider():
    caller = providers()
    params = {"temperature": 0.1, "max_tokens": 8, "max_retries": 0, "input_token_limit": 500}

    outcome = await run_single(task(StageDef("Hi {{ input }}", "scripted:m", params)), caller)

    assert outcome.status == "completed"
    ((_, _, sent, _),) = adapter_of(caller).calls
    assert sent == {"temperature": 0.1, "max_tokens": 8}
    assert outcome.stages[0].params == params  # the stored record keeps what was asked


async def test_a_prompt_over_the_input_token_limit_fails_before_any_call():
    caller = providers()
    long_input = " ".join(["word"] * 50)

    outcome = await run_single(
        task(
            StageDef("{{ input }}", "scripted:m", {"input_token_limit": 10}),
            row={"input": long_input},
        ),
        caller,
    )

    assert outcome.status == "failed"
    assert outcome.error == "input_token_limit: the prompt has 50 tokens, over the limit of 10"
    assert "scripted" not in caller._gates or adapter_of(caller).calls == []


async def test_a_pipeline_stops_when_the_token_budget_is_used_up():
    caller = providers(tokens=(30, 20))
    stages = [
        StageDef("one {{ input }}", "scripted:m", {"token_budget": 100}),
        StageDef("two {{ prev_output }}", "scripted:m", {"token_budget": 100}),
        StageDef("three {{ prev_output }}", "scripted:m", {"token_budget": 100}),
    ]

    outcome = await run_single(task(*stages), caller)

    assert outcome.status == "failed"
    assert len(outcome.stages) == 2
    assert len(adapter_of(caller).calls) == 2
    assert outcome.error == (
        "token_budget: 100 tokens used by 2 of the pipeline's stages reached the budget of 100; "
        "the pipeline stopped"
    )


async def test_a_pipeline_within_its_budget_completes():
    caller = providers(tokens=(30, 20))
    stages = [StageDef("s{{ stage_index }}", "scripted:m", {"token_budget": 101})] * 3

    assert (await run_single(task(*stages), caller)).status == "completed"


class SlowFlakyAdapter:
    """Sleeps ``delay`` seconds per call, and fails retryably the first ``failures`` times."""

    def __init__(self, delay: float, failures: int = 0) -> None:
        self.delay, self.failures, self.calls = delay, failures, 0

    async def complete(self, prompt, model, params, *, system=None):
        self.calls += 1
        if self.calls <= self.failures:
            raise AdapterError("flaky", retryable=True, retry_after=0)
        await asyncio.sleep(self.delay)
        return AdapterResponse("ok", 1, 1, model=model)

    async def aclose(self):
        return None


def _with_adapter(adapter, **config) -> Providers:
    caller = Providers({"slow": ProviderConfig(name="slow", type="mock", **config)})
    gate = caller._gate("slow")
    gate.adapter = adapter
    return caller


async def test_timeout_seconds_overrides_the_provider_timeout():
    caller = _with_adapter(SlowFlakyAdapter(delay=1.0), timeout=60, max_retries=0)

    outcome = await run_single(task(StageDef("x", "slow:m", {"timeout_seconds": 0.05})), caller)

    assert outcome.status == "failed"
    assert outcome.error == "slow timed out after 0.05 s"


async def test_max_retries_overrides_the_provider_retries():
    adapter = SlowFlakyAdapter(delay=0, failures=2)
    caller = _with_adapter(adapter, max_retries=10)

    outcome = await run_single(task(StageDef("x", "slow:m", {"max_retries": 1})), caller)

    assert outcome.status == "failed"
    assert adapter.calls == 2

    adapter = SlowFlakyAdapter(delay=0, failures=2)
    caller = _with_adapter(adapter, max_retries=0)
    outcome = await run_single(task(StageDef("x", "slow:m", {"max_retries": 2})), caller)
    assert outcome.status == "completed"
    assert adapter.calls == 3


def test_the_plan_refuses_bad_budget_values_naming_the_field():
    spec = parse_spec(
        {
            "name": "budget",
            "parameter_space": {
                "model": ["mock:m"],
                "prompt": ["{{ input }}"],
                "token_budget": [100, 0],
            },
            "dataset": {"rows": [{"input": "a"}]},
        }
    )

    with pytest.raises(Invalid, match=r"^parameter_space\.token_budget: must be at least 1"):
        compile_plan(spec)
