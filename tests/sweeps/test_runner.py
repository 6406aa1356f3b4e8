"""Seed 001's run-engine scenarios against the pure engine (no database)."""

from __future__ import annotations

import dataclasses
import math
import uuid

import pytest

from promptlooper.events import EventBus
from promptlooper.sweeps.adapters import ProviderConfig
from promptlooper.sweeps.engine.cache import CachedResponse, MemoryCache, cache_key
from promptlooper.sweeps.engine.executor import Providers
from promptlooper.sweeps.engine.runner import (
    RunTask,
    StageDef,
    first_stage_key,
    run_single,
    weighted_score,
)
from tests.sweeps.scripted import ScriptedAdapter


def providers(**options) -> Providers:
    return Providers(
        {"scripted": ProviderConfig(name="scripted", type="scripted", options=options)}
    )


def task(*stages: StageDef, row: dict | None = None, config: dict | None = None) -> RunTask:
    return RunTask(
        run_id=uuid.uuid4(),
        experiment_id=uuid.uuid4(),
        stages=stages,
        config=config or {},
        row=row or {"input": "Python programming"},
    )


def adapter_of(caller: Providers) -> ScriptedAdapter:
    return caller._gates["scripted"].adapter  # type: ignore[return-value]


class FixedScorer:
    def __init__(self, name: str, value: float) -> None:
        self.name = name
        self.value = value

    def score(self, input_data, output, context):
        return self.value


class AsyncScorer(FixedScorer):
    async def score(self, input_data, output, context):
        return self.value


class BrokenScorer:
    name = "broken"

    def score(self, input_data, output, context):
        raise ValueError("scorer exploded")


async def test_single_stage_run():
    caller = providers(replies=["Why did the chicken..."])
    outcome = await run_single(
        task(StageDef("Tell me a joke", "scripted:test-model", {"temperature": 0.7})), caller
    )

    assert outcome.status == "completed"
    assert (outcome.tokens_in, outcome.tokens_out) == (10, 5)
    assert outcome.started_at <= outcome.completed_at
    assert outcome.duration_ms >= 0
    (stage,) = outcome.stages
    assert stage.response_raw == "Why did the chicken..."
    assert stage.model_used == "test-model"
    assert stage.stage_index == 0
    assert stage.params == {"temperature": 0.7}


async def test_multi_stage_pipeline_feeds_each_stage_the_previous_output():
    caller = providers(replies=["stage-{n}-output"], tokens=(5, 3))
    outcome = await run_single(
        task(
            StageDef("Generate a question about {{ input }}", "scripted:model-a"),
            StageDef("Answer this: {{ prev_output }}", "scripted:model-b"),
        ),
        caller,
    )

    assert outcome.status == "completed"
    assert (outcome.tokens_in, outcome.tokens_out) == (10, 6)
    first, second = outcome.stages
    assert (first.model_used, second.model_used) == ("model-a", "model-b")
    assert first.prompt_sent == "Generate a question about Python programming"
    assert "stage-1-output" in second.prompt_sent


async def test_stage_history_and_row_fields_reach_templates():
    caller = providers(replies=["stage output"])
    outcome = await run_single(
        task(
            StageDef("First: {{ input }} for {{ customer }}", "scripted:m"),
            StageDef(
                "Stage 0 said: {{ stages[0].output }} (stage {{ stage_index }})", "scripted:m"
            ),
            row={"input": "hello", "customer": "ACME", "expected": "secret"},
        ),
        caller,
    )

    assert outcome.stages[0].prompt_sent == "First: hello for ACME"
    assert outcome.stages[1].prompt_sent == "Stage 0 said: stage output (stage 1)"


async def test_expected_is_kept_from_prompts():
    outcome = await run_single(
        task(StageDef("Answer: {{ expected }}", "scripted:m"), row={"input": "q", "expected": "a"}),
        providers(),
    )
    assert outcome.status == "failed"
    assert "undefined template variable" in (outcome.error or "")


async def test_cache_hit_skips_the_adapter():
    caller = providers()
    cache = MemoryCache()
    await cache.put(
        cache_key("cached prompt", "m", {}, None, caller.configs["scripted"].identity()),
        CachedResponse("cached!", "m", 1, 1),
    )

    outcome = await run_single(task(StageDef("cached prompt", "scripted:m")), caller, cache=cache)

    assert outcome.status == "completed"
    assert outcome.stages[0].response_raw == "cached!"
    assert outcome.stages[0].cached is True
    assert "scripted" not in caller._gates  # the adapter was never even built
    assert cache.stats.hits == 1


async def test_the_cache_is_filled_after_a_call_and_used_next_time():
    caller = providers(replies=["fresh response"])
    cache = MemoryCache()
    run = task(StageDef("store me", "scripted:m", {"temperature": 0}, system="be brief"))

    first = await run_single(run, caller, cache=cache)
    second = await run_single(run, caller, cache=cache)

    assert len(cache.entries) == 1
    assert (first.stages[0].cached, second.stages[0].cached) == (False, True)
    assert len(adapter_of(caller).calls) == 1


async def test_a_first_call_prepared_for_the_cache_lookup_is_the_call_the_run_makes():
    stages = (
        StageDef("Q: {{ input }}", "scripted:m", {"temperature": 0}, system="be {{ config.tone }}"),
        StageDef("Again: {{ prev_output }}", "scripted:m"),
    )
    prepared = task(*stages, config={"tone": "brief"})
    plain = task(*stages, config={"tone": "brief"})

    caller, cache = providers(replies=["out {n}"]), MemoryCache()
    key = first_stage_key(prepared, caller)
    await run_single(prepared, caller, cache=cache)
    replay = await run_single(plain, caller, cache=cache)  # rendered from scratch: all hits

    identity = caller.configs["scripted"].identity()
    assert key == cache_key("Q: Python programming", "m", {"temperature": 0}, "be brief", identity)
    assert prepared.first_call == ("Q: Python programming", "be brief", key)
    assert [call[0] for call in adapter_of(caller).calls] == [
        "Q: Python programming",
        "Again: out 1",
    ]
    assert adapter_of(caller).calls[0][3] == "be brief"
    assert [stage.cached for stage in replay.stages] == [True, True]


def _keyed(config: ProviderConfig) -> str | None:
    return first_stage_key(task(StageDef("Hi {{ input }}", "p:m")), Providers({"p": config}))


def test_the_cache_key_covers_the_provider_type_endpoint_and_options_not_the_key():
    base = ProviderConfig(name="p", type="openai", base_url="http://127.0.0.1:8001/v1")
    same = {
        "another API key": dataclasses.replace(base, api_key="sk-other"),
        "another timeout": dataclasses.replace(base, timeout=5.0),
    }
    different = {
        "another endpoint": dataclasses.replace(base, base_url="http://127.0.0.1:8002/v1"),
        "the default endpoint": dataclasses.replace(base, base_url=None),
        "another type": dataclasses.replace(base, type="anthropic"),
        "other options": dataclasses.replace(base, options={"knowledge": {"a": "b"}}),
    }

    key = _keyed(base)

    assert key is not None
    assert {name: _keyed(config) for name, config in same.items()} == dict.fromkeys(same, key)
    assert len({key, *(_keyed(config) for config in different.values())}) == 1 + len(different)


async def test_two_names_for_one_endpoint_share_answers():
    config = ProviderConfig(name="a", type="scripted", options={"replies": ["shared"]})
    caller = Providers({"a": config, "b": dataclasses.replace(config, name="b")})
    cache = MemoryCache()

    await run_single(task(StageDef("same prompt", "a:m")), caller, cache=cache)
    second = await run_single(task(StageDef("same prompt", "b:m")), caller, cache=cache)

    assert second.stages[0].cached is True
    assert len(cache.entries) == 1


async def test_runs_that_bypass_the_cache_call_the_adapter():
    caller = providers()
    cache = MemoryCache()
    run = task(StageDef("p", "scripted:m"))
    run.use_cache = False

    await run_single(run, caller, cache=cache)
    await run_single(run, caller, cache=cache)

    assert len(adapter_of(caller).calls) == 2
    assert cache.entries == {}


async def test_scorers_sync_async_clamped_and_failing_ones_skipped(caplog):
    scorers = [
        FixedScorer("quality", 0.9),
        AsyncScorer("async_quality", 0.95),
        FixedScorer("over", 1.5),
        FixedScorer("under", -0.3),
        FixedScorer("nan", math.nan),
        BrokenScorer(),
    ]
    outcome = await run_single(task(StageDef("test", "scripted:m")), providers(), scorers=scorers)

    assert outcome.status == "completed"
    assert outcome.scores == pytest.approx(
        {"quality": 0.9, "async_quality": 0.95, "over": 1.0, "under": 0.0}
    )
    assert "scorer exploded" in caplog.text


async def test_weighted_score_is_the_weighted_mean_of_present_scores():
    assert weighted_score(
        {"accuracy": 0.95, "fluency": 0.80}, {"accuracy": 0.7, "fluency": 0.3}
    ) == (pytest.approx(0.905))
    assert weighted_score({"a": 1.0}, {"a": 0.7, "missing": 0.3}) == pytest.approx(1.0)
    assert weighted_score({"a": 0.5, "b": 1.0}, {}) == pytest.approx(0.75)
    assert weighted_score({"a": 1.0}, {"a": 0.0}) is None


async def test_adapter_failure_marks_the_run_failed_with_completed_at():
    outcome = await run_single(
        task(StageDef("test", "scripted:m")), providers(fail="LLM endpoint down")
    )

    assert outcome.status == "failed"
    assert outcome.error == "LLM endpoint down"
    assert outcome.completed_at is not None
    assert outcome.scores == {}


async def test_events_on_success_and_failure_and_a_broken_listener_changes_nothing():
    bus = EventBus()
    events: list[dict] = []
    bus.subscribe(events.append)
    bus.subscribe(lambda _e: 1 / 0)

    ok = await run_single(task(StageDef("test", "scripted:m")), providers(), bus=bus)
    failed = await run_single(task(StageDef("test", "scripted:m")), providers(fail="boom"), bus=bus)

    assert ok.status == "completed"
    assert failed.status == "failed"
    types = [e["type"] for e in events]
    assert types == [
        "run.started",
        "run.stage_completed",
        "run.completed",
        "run.started",
        "run.failed",
    ]
    assert events[-1]["error"] == "boom"
    assert events[2]["run_id"] == str(ok.run_id)


async def test_events_survive_an_unreachable_redis():
    bus = EventBus("redis://127.0.0.1:1/0", timeout=0.1)
    outcome = await run_single(task(StageDef("test", "scripted:m")), providers(), bus=bus)
    await bus.close()
    assert outcome.status == "completed"
