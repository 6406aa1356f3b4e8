"""``run_single``: one config applied to one dataset row, stage by stage.

For each stage the prompt (and system prompt) render in the sandbox with ``input``, the row's
fields, ``config``, ``stages`` (earlier outputs), ``prev_output`` and ``stage_index``; the cache
is asked before the provider and filled after it. Scorers then run on the last output: sync or
async, clamped to [0, 1], and a scorer that raises is logged and skipped. A failing stage marks
the run failed with its error. ``run.started``, ``run.stage_completed``, ``run.completed`` and
``run.failed`` go out on the event bus, which never raises into the run.
"""

from __future__ import annotations

import inspect
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NamedTuple, Protocol

from promptlooper.errors import Invalid, PromptLooperError
from promptlooper.events import EventBus
from promptlooper.sweeps.adapters.base import AdapterError, AdapterResponse
from promptlooper.sweeps.engine.budget import Budget, check_input, split_params
from promptlooper.sweeps.engine.cache import CachedResponse, ResponseCache, cache_key
from promptlooper.sweeps.engine.persistence import RunOutcome, StageOutcome
from promptlooper.sweeps.engine.spending import SpendingExhausted
from promptlooper.sweeps.engine.templating import render
from promptlooper.sweeps.scorers.base import Scorer
from promptlooper.values import storable

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class StageDef:
    """One pipeline stage with its config-level values resolved; prompts stay templates."""

    prompt_template: str
    model: str
    params: dict[str, Any] = field(default_factory=dict)
    system: str | None = None
    name: str | None = None


class FirstCall(NamedTuple):
    """The first stage's prompt, system prompt and cache key: worked out before the sweep
    starts, to look every run's first call up in the cache at once, and reused by the run."""

    prompt: str
    system: str | None
    key: str


@dataclass(slots=True)
class RunTask:
    run_id: uuid.UUID
    experiment_id: uuid.UUID | None
    stages: Sequence[StageDef]
    config: Mapping[str, Any]
    row: Mapping[str, Any]
    use_cache: bool = True
    first_call: FirstCall | None = None


class ModelCaller(Protocol):
    """Calls a model by reference (``provider:model``), with retries and limits applied;
    ``call_timeout`` (seconds) and ``max_retries`` override the provider's for this call."""

    async def complete(
        self,
        model_ref: str,
        prompt: str,
        params: dict[str, Any],
        system: str | None,
        *,
        call_timeout: float | None = None,
        max_retries: int | None = None,
    ) -> AdapterResponse: ...

    def cost(self, model_ref: str, tokens_in: int, tokens_out: int) -> float: ...

    def identify(self, model_ref: str) -> tuple[str, dict[str, Any]]:
        """The provider's own name for the model, and what identifies the provider (see
        ``ProviderConfig.identity``): with the call itself, what a cache key covers."""
        ...


def weighted_score(scores: Mapping[str, float], weights: Mapping[str, float]) -> float | None:
    """Σ wᵢ·vᵢ / Σ wᵢ over the scores present; a scorer without a weight weighs 1."""
    total = sum(weights.get(name, 1.0) for name in scores)
    if total <= 0:
        return None
    return sum(value * weights.get(name, 1.0) for name, value in scores.items()) / total


def template_context(row: Mapping[str, Any], config: Mapping[str, Any]) -> dict[str, Any]:
    """Variables every stage template sees. ``expected`` is kept from prompts: it is for
    scorers, and leaking it into a prompt would make every score meaningless."""
    visible = {key: value for key, value in row.items() if key != "expected"}
    return {**visible, "input": row.get("input", visible), "row": visible, "config": config}


def stage_context(
    base: dict[str, Any], views: list[dict[str, Any]], prev: str, index: int
) -> dict[str, Any]:
    """What stage ``index`` sees, given what earlier stages produced (``views``)."""
    return {**base, "stages": views, "prev_output": prev, "stage_index": index}


def score_context(
    base: dict[str, Any], row: Mapping[str, Any], views: list[dict[str, Any]], output: str
) -> dict[str, Any]:
    """What scorers see: the stages' context with ``expected`` and the final output."""
    return {
        **base,
        "expected": row.get("expected"),
        "row": dict(row),
        "stages": views,
        "output": output,
    }


def _now() -> datetime:
    return datetime.now(UTC)


def _render_stage(
    stage: StageDef, base: dict[str, Any], views: list[dict[str, Any]], prev: str, index: int
) -> tuple[str, str | None]:
    """The prompt and system prompt a stage sends, given what earlier stages produced."""
    context = stage_context(base, views, prev, index)
    prompt = render(stage.prompt_template, context)
    return prompt, render(stage.system, context) if stage.system else None


def _call_key(
    caller: ModelCaller, model_ref: str, prompt: str, params: dict[str, Any], system: str | None
) -> str:
    model, provider = caller.identify(model_ref)
    return cache_key(prompt, model, params, system, provider)


def first_stage_key(task: RunTask, caller: ModelCaller) -> str | None:
    """The cache key of a task's first call, known before anything runs (later stages depend
    on earlier outputs); None when the task skips the cache or its prompt does not render.
    The rendered call is kept on the task for the run to send."""
    if not task.stages or not task.use_cache:
        return None
    stage = task.stages[0]
    try:
        base = template_context(task.row, task.config)
        prompt, system = _render_stage(stage, base, [], "", 0)
        params, _ = split_params(stage.params)
        key = _call_key(caller, stage.model, prompt, params, system)
    except PromptLooperError:
        return None
    task.first_call = FirstCall(prompt, system, key)
    return key


async def _score(
    scorers: Sequence[Scorer], output: str, context: dict[str, Any]
) -> dict[str, float]:
    scores: dict[str, float] = {}
    for scorer in scorers:
        try:
            value = scorer.score(context["input"], output, context)
            if inspect.isawaitable(value):
                value = await value
            number = float(value)
            if math.isnan(number):
                raise ValueError("score is NaN")
        except SpendingExhausted:
            raise  # a judge the budget cannot pay for: the run stays pending, not unscored
        except Exception as exc:
            logger.warning("scorer %r failed and was skipped: %s", scorer.name, exc)
            continue
        scores[scorer.name] = min(1.0, max(0.0, number))
    return scores


async def run_single(
    task: RunTask,
    caller: ModelCaller,
    *,
    cache: ResponseCache | None = None,
    scorers: Sequence[Scorer] = (),
    weights: Mapping[str, float] | None = None,
    bus: EventBus | None = None,
) -> RunOutcome:
    async def emit(kind: str, **fields: Any) -> None:
        if bus is not None and bus.has_audience:
            ids = {"run_id": str(task.run_id), "experiment_id": str(task.experiment_id)}
            await bus.publish({"type": kind, **ids, **fields})

    started_at = _now()
    await emit("run.started")
    base = template_context(task.row, task.config)
    stages: list[StageOutcome] = []
    views: list[dict[str, Any]] = []
    prev_output = ""
    token_budget: int | None = None
    try:
        for index, stage in enumerate(task.stages):
            params, budget = split_params(stage.params)
            if budget.token_budget is not None:
                token_budget = min(token_budget or budget.token_budget, budget.token_budget)
            _check_budget(token_budget, stages)
            if index == 0 and task.first_call is not None:
                prompt, system, key = task.first_call
            else:
                prompt, system = _render_stage(stage, base, views, prev_output, index)
                key = None
            check_input(prompt, system, stage.model, budget.input_token_limit)
            outcome = await _run_stage(
                task, caller, cache, index, stage, params, budget, prompt, system, key
            )
            stages.append(outcome)
            views.append({"output": outcome.response_raw, "prompt": prompt, "model": stage.model})
            prev_output = outcome.response_raw
            await emit(
                "run.stage_completed",
                stage_index=index,
                cached=outcome.cached,
                latency_ms=outcome.latency_ms,
            )
    except (AdapterError, PromptLooperError) as exc:
        message = storable(exc.message)  # it may quote what the provider answered
        failed = RunOutcome(
            run_id=task.run_id,
            status="failed",
            started_at=started_at,
            completed_at=_now(),
            stages=stages,
            error=message,
        )
        await emit("run.failed", error=message)
        return failed

    scores = await _score(scorers, prev_output, score_context(base, task.row, views, prev_output))
    outcome = RunOutcome(
        run_id=task.run_id,
        status="completed",
        started_at=started_at,
        completed_at=_now(),
        stages=stages,
        scores=scores,
        weighted_score=weighted_score(scores, weights or {}),
    )
    await emit(
        "run.completed", weighted_score=outcome.weighted_score, duration_ms=outcome.duration_ms
    )
    return outcome


def _check_budget(token_budget: int | None, done: Sequence[StageOutcome]) -> None:
    """Stop a pipeline whose earlier stages used up the run's token budget."""
    if token_budget is None or not done:
        return
    used = sum(stage.tokens_in + stage.tokens_out for stage in done)
    if used >= token_budget:
        raise Invalid(
            f"token_budget: {used} tokens used by {len(done)} of the pipeline's stages "
            f"reached the budget of {token_budget}; the pipeline stopped"
        )


async def _run_stage(
    task: RunTask,
    caller: ModelCaller,
    cache: ResponseCache | None,
    index: int,
    stage: StageDef,
    params: dict[str, Any],
    budget: Budget,
    prompt: str,
    system: str | None,
    key: str | None,
) -> StageOutcome:
    provider = stage.model.partition(":")[0]
    use_cache = cache is not None and task.use_cache
    if use_cache and key is None:
        key = _call_key(caller, stage.model, prompt, params, system)
    hit = await cache.get(key) if use_cache and cache is not None and key else None
    if hit is not None:
        return _storable(
            StageOutcome(
                stage_index=index,
                prompt_sent=prompt,
                system_sent=system,
                response_raw=hit.text,
                model_used=hit.model,
                provider=provider,
                params=stage.params,
                tokens_in=hit.tokens_in,
                tokens_out=hit.tokens_out,
                latency_ms=0.0,
                cost=0.0,
                cached=True,
                sanitized=hit.sanitized,
            )
        )
    response = await caller.complete(
        stage.model,
        prompt,
        params,
        system,
        call_timeout=budget.timeout_seconds,
        max_retries=budget.max_retries,
    )
    outcome = _storable(
        StageOutcome(
            stage_index=index,
            prompt_sent=prompt,
            system_sent=system,
            response_raw=response.text,
            model_used=response.model or stage.model,
            provider=provider,
            params=stage.params,
            tokens_in=response.tokens_in,
            tokens_out=response.tokens_out,
            latency_ms=response.latency_ms,
            cost=caller.cost(stage.model, response.tokens_in, response.tokens_out),
            cached=False,
        )
    )
    if use_cache and cache is not None and key:
        await cache.put(
            key,
            CachedResponse(
                text=outcome.response_raw,
                model=outcome.model_used,
                tokens_in=outcome.tokens_in,
                tokens_out=outcome.tokens_out,
                sanitized=outcome.sanitized,
            ),
        )
    return outcome


def _storable(outcome: StageOutcome) -> StageOutcome:
    """The stage as the database can hold it. A model may answer anything, and a template
    render anything: text no database here stores is replaced and the stage marked, so that
    the run is recorded rather than failing the whole batch it is written with. Later stages
    and scorers see what is stored."""
    replaced = {}
    for name in ("prompt_sent", "system_sent", "response_raw", "model_used"):
        text = getattr(outcome, name)
        if text is not None and (kept := storable(text)) != text:
            replaced[name] = kept
    return replace(outcome, **replaced, sanitized=True) if replaced else outcome
