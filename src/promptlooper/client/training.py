"""The training API from Python: ``client.training`` lists models and runs, and
``client.training.create(...)`` gives a ``TrainingClient`` bound to a new run.

Every ``TrainingClient`` method returns a typed result with the blocking ``Client`` and an
awaitable of it with ``AsyncClient``. Pass ``wait=False`` to a primitive to queue it and get a
``TrainingFuture`` back at once (the call is sent in the background, see ``outbox``); a run's
calls execute in the order they were made, so a whole step can be pipelined and only its last
future awaited with ``result()``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from promptlooper.client.calls import Call, raise_for_status
from promptlooper.client.errors import APIError
from promptlooper.client.outbox import Enqueue, Outbox, TrainingFuture
from promptlooper.client.resources import Runner, _drop_none, _Resource

STEP_TIMEOUT = 600.0
"""Seconds a training call may take (the first call also loads the base model)."""

Example = Mapping[str, Any] | str
"""``{"text": ...}``, ``{"messages": [...]}``, ``{"tokens": [...], "weights": [...]}``, or a
plain string for ``{"text": ...}``."""


@dataclass(frozen=True, slots=True)
class LossOutput:
    loss: float
    mean_loss: float
    tokens: int
    per_example_loss: list[float]


@dataclass(frozen=True, slots=True)
class OptimOutput:
    step: int
    grad_norm: float
    learning_rate: float
    loss: float
    tokens: int


@dataclass(frozen=True, slots=True)
class SampledSequence:
    text: str
    tokens: list[int]
    logprobs: list[float]
    stop_reason: Literal["stop", "length"]


@dataclass(frozen=True, slots=True)
class PromptSamples:
    prompt_tokens: list[int]
    sequences: list[SampledSequence]


@dataclass(frozen=True, slots=True)
class SampleOutput:
    samples: list[PromptSamples]
    elapsed_ms: float
    """The model's time for the call, without the wait behind earlier calls."""

    @property
    def texts(self) -> list[str]:
        """The first sequence's text for each prompt."""
        return [s.sequences[0].text for s in self.samples]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    name: str
    kind: Literal["adapter", "merged"]
    step: int
    path: str
    created_at: str


@dataclass(frozen=True, slots=True)
class LoadOutput:
    step: int
    with_optimizer: bool


@dataclass(frozen=True, slots=True)
class StepMetric:
    step: int
    loss: float
    tokens: int
    grad_norm: float
    learning_rate: float
    created_at: str


@dataclass(frozen=True, slots=True)
class RunInfo:
    id: str
    name: str
    base_model: str
    lora: dict[str, Any]
    seed: int
    step: int
    created_at: str
    updated_at: str


@dataclass(frozen=True, slots=True)
class ModelInfo:
    name: str
    description: str
    source: str
    available: bool
    max_seq_len: int
    chat_template: str
    lora: dict[str, Any] = field(default_factory=dict)
    lora_modules: list[str] | None = None
    """The layers ``target_modules`` may name (None: the server does not check them)."""


def _sample_output(body: Mapping[str, Any]) -> SampleOutput:
    return SampleOutput(
        samples=[
            PromptSamples(
                prompt_tokens=s["prompt_tokens"],
                sequences=[SampledSequence(**q) for q in s["sequences"]],
            )
            for s in body["samples"]
        ],
        elapsed_ms=body["elapsed_ms"],
    )


_RESULTS: dict[str, Any] = {
    "forward_backward": lambda b: LossOutput(**b),
    "forward": lambda b: LossOutput(**b),
    "optim_step": lambda b: OptimOutput(**b),
    "sample": _sample_output,
    "save_state": lambda b: Checkpoint(**b),
    "load_state": lambda b: LoadOutput(**b),
}


def _examples(examples: Iterable[Example]) -> list[Any]:
    return [{"text": e} if isinstance(e, str) else dict(e) for e in examples]


def _loss_body(
    examples: Iterable[Example], loss_fn: str, config: Mapping[str, float] | None
) -> dict[str, Any]:
    return _drop_none(
        {"examples": _examples(examples), "loss_fn": loss_fn, "loss_fn_config": config}
    )


def _prompts(prompts: Iterable[str | Sequence[Mapping[str, str]]]) -> list[Any]:
    return [p if isinstance(p, str) else [dict(m) for m in p] for p in prompts]


class TrainingClient:
    """One training run's primitives (Tinker's names and semantics)."""

    def __init__(self, run: Runner, info: RunInfo) -> None:
        self._run = run
        self.info = info
        self.run_id = info.id
        self._outbox = Outbox(info.id)

    def _primitive(self, operation: str, body: Any, wait: bool) -> Any:
        if not wait:
            return self._run(Enqueue(self._outbox, operation, body))
        path = f"/api/training/runs/{self.run_id}/{operation}"
        parse = _RESULTS[operation]
        return self._run(
            Call(
                "POST",
                path,
                body,
                parse=lambda response: parse(response.json()),
                timeout=STEP_TIMEOUT,
                after=self._outbox,
                check=self._outbox.raise_refusal,
            )
        )

    def forward_backward(
        self,
        examples: Iterable[Example],
        loss_fn: str = "cross_entropy",
        *,
        loss_fn_config: Mapping[str, float] | None = None,
        wait: bool = True,
    ) -> Any:
        """Loss and gradients for a batch; gradients add up until ``optim_step``."""
        return self._primitive(
            "forward_backward", _loss_body(examples, loss_fn, loss_fn_config), wait
        )

    def forward(
        self,
        examples: Iterable[Example],
        loss_fn: str = "cross_entropy",
        *,
        loss_fn_config: Mapping[str, float] | None = None,
        wait: bool = True,
    ) -> Any:
        """The loss without gradients (evaluation)."""
        return self._primitive("forward", _loss_body(examples, loss_fn, loss_fn_config), wait)

    def optim_step(
        self,
        learning_rate: float = 1e-4,
        *,
        beta1: float = 0.9,
        beta2: float = 0.95,
        eps: float = 1e-12,
        weight_decay: float = 0.0,
        grad_clip_norm: float | None = None,
        wait: bool = True,
    ) -> Any:
        body = _drop_none(
            {
                "learning_rate": learning_rate,
                "beta1": beta1,
                "beta2": beta2,
                "eps": eps,
                "weight_decay": weight_decay,
                "grad_clip_norm": grad_clip_norm,
            }
        )
        return self._primitive("optim_step", body, wait)

    def sample(
        self,
        prompts: Iterable[str | Sequence[Mapping[str, str]]],
        *,
        max_tokens: int = 64,
        temperature: float = 1.0,
        top_p: float = 1.0,
        top_k: int = 0,
        stop: Sequence[str] = (),
        seed: int | None = None,
        num_samples: int = 1,
        wait: bool = True,
    ) -> Any:
        """Prompts are text or chat messages (rendered with the model's chat template)."""
        body = _drop_none(
            {
                "prompts": _prompts(prompts),
                "max_tokens": max_tokens,
                "temperature": temperature,
                "top_p": top_p,
                "top_k": top_k,
                "stop": list(stop),
                "seed": seed,
                "num_samples": num_samples,
            }
        )
        return self._primitive("sample", body, wait)

    def save_state(
        self,
        name: str | None = None,
        *,
        kind: Literal["adapter", "merged"] = "adapter",
        overwrite: bool = False,
        wait: bool = True,
    ) -> Any:
        """A checkpoint of the run; one of the same name is replaced only with ``overwrite``
        (otherwise the server answers 409)."""
        body = _drop_none({"name": name, "kind": kind, "overwrite": overwrite or None})
        return self._primitive("save_state", body, wait)

    def load_state(
        self,
        checkpoint: str,
        *,
        run_id: str | None = None,
        with_optimizer: bool = False,
        wait: bool = True,
    ) -> Any:
        body = _drop_none(
            {"checkpoint": checkpoint, "run_id": run_id, "with_optimizer": with_optimizer}
        )
        return self._primitive("load_state", body, wait)

    def result(self, future: TrainingFuture, *, timeout: float = 300.0) -> Any:
        """The queued call's typed result; its error if it failed."""

        def parse(response: httpx.Response) -> Any:
            raise_for_status(response)
            if response.status_code == 202:
                raise APIError(None, f"{future.operation} still running after {timeout} s")
            return _RESULTS[future.operation](response.json()["result"])

        path = f"/api/training/futures/{future.future_id}"
        return self._run(
            Call(
                "GET",
                path,
                params={"wait_seconds": timeout},
                parse=parse,
                timeout=timeout + 30,
                after=self._outbox,
                check=lambda: self._outbox.raise_failure(future),
            )
        )

    def metrics(self) -> Any:
        """Every optimizer step's loss, tokens, grad norm and learning rate."""

        def parse(response: httpx.Response) -> list[StepMetric]:
            raise_for_status(response)
            return [StepMetric(**m) for m in response.json()["steps"]]

        path = f"/api/training/runs/{self.run_id}/metrics"
        return self._run(Call("GET", path, parse=parse, after=self._outbox))

    def checkpoints(self) -> Any:
        def parse(response: httpx.Response) -> list[Checkpoint]:
            raise_for_status(response)
            return [Checkpoint(**c) for c in response.json()["data"]]

        path = f"/api/training/runs/{self.run_id}/checkpoints"
        return self._run(Call("GET", path, parse=parse, after=self._outbox))


class Training(_Resource):
    """``client.training``: models, runs, and ``TrainingClient`` for a run."""

    def models(self) -> Any:
        def parse(response: httpx.Response) -> list[ModelInfo]:
            raise_for_status(response)
            return [ModelInfo(**m) for m in response.json()["data"]]

        return self._run(Call("GET", "/api/training/models", parse=parse))

    def create(
        self,
        base_model: str,
        *,
        name: str = "",
        rank: int | None = None,
        alpha: float | None = None,
        dropout: float | None = None,
        target_modules: Sequence[str] | None = None,
        seed: int = 0,
    ) -> Any:
        """A new run on ``base_model``; LoRA settings default to the model's registry entry."""
        body = _drop_none(
            {
                "base_model": base_model,
                "name": name,
                "lora_rank": rank,
                "lora_alpha": alpha,
                "lora_dropout": dropout,
                "lora_target_modules": list(target_modules) if target_modules else None,
                "seed": seed,
            }
        )
        return self._run(Call("POST", "/api/training/runs", body, parse=self._bind))

    def run(self, run_id: str) -> Any:
        """A ``TrainingClient`` for an existing run of yours."""
        return self._run(Call("GET", f"/api/training/runs/{run_id}", parse=self._bind))

    def list(self) -> Any:
        def parse(response: httpx.Response) -> list[RunInfo]:
            raise_for_status(response)
            return [RunInfo(**r) for r in response.json()["data"]]

        return self._run(Call("GET", "/api/training/runs", parse=parse))

    def delete(self, run_id: str) -> Any:
        return self._run(Call("DELETE", f"/api/training/runs/{run_id}"))

    def _bind(self, response: httpx.Response) -> TrainingClient:
        raise_for_status(response)
        return TrainingClient(self._run, RunInfo(**response.json()))
