"""Request and response bodies of the training API (shared by the routes, the service, the
backend and the CLI; the SDK keeps its own copies of the response shapes)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from promptlooper.types import RequestBody, pattern_words

LossFn = Literal["cross_entropy", "importance_sampling", "ppo"]
CheckpointKind = Literal["adapter", "merged"]

MAX_BATCH = 1024
MAX_PROMPTS = 256


# --- models and runs ---------------------------------------------------------------------------


class LoraPublic(BaseModel):
    rank: int
    alpha: float
    dropout: float
    target_modules: list[str]


class ModelPublic(BaseModel):
    name: str
    description: str
    source: str
    """``builtin``, ``gguf``, ``path`` or ``hf``."""
    available: bool
    """Whether the weights are on this machine (an ``hf`` model may still download)."""
    max_seq_len: int
    chat_template: str
    lora: LoraPublic
    """The defaults a run gets for the LoRA fields it leaves out."""
    lora_modules: list[str] | None
    """The layers a run's ``lora_target_modules`` may name (None: not listed, not checked)."""


class ModelList(BaseModel):
    data: list[ModelPublic]
    count: int


class RunCreate(RequestBody):
    base_model: str = Field(min_length=1)
    name: str = Field(default="", max_length=200)
    lora_rank: int | None = Field(default=None, ge=1, le=1024)
    lora_alpha: float | None = Field(default=None, gt=0)
    lora_dropout: float | None = Field(default=None, ge=0, lt=1)
    lora_target_modules: list[str] | None = Field(default=None, min_length=1)
    seed: int = Field(default=0, ge=0, le=2**31 - 1)


class RunPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    name: str
    base_model: str
    lora: LoraPublic
    seed: int
    step: int
    created_at: datetime
    updated_at: datetime


class RunList(BaseModel):
    data: list[RunPublic]
    count: int


# --- primitives ----------------------------------------------------------------------------------


class Message(RequestBody):
    role: Literal["system", "user", "assistant"]
    content: str


class Example(RequestBody):
    """One training example in one of three forms.

    - ``text``: every token after the first is a target.
    - ``messages``: a chat rendered with the model's template; only assistant tokens count.
    - ``tokens``: token ids with per-token ``weights`` (and ``logprobs``/``advantages`` for the
      RL losses), each list as long as ``tokens``: entry *i* applies to predicting token *i*
      (entry 0 is ignored). With ``target_tokens`` the lists follow Tinker's layout instead:
      ``tokens`` is the model input and position *i* predicts ``target_tokens[i]``.
    """

    text: str | None = None
    messages: list[Message] | None = None
    tokens: list[int] | None = None
    target_tokens: list[int] | None = None
    weights: list[float] | None = None
    logprobs: list[float] | None = None
    advantages: list[float] | None = None

    @model_validator(mode="after")
    def _one_form(self) -> Example:
        forms = [f for f in ("text", "messages", "tokens") if getattr(self, f) is not None]
        if len(forms) != 1:
            raise ValueError("an example has exactly one of text, messages, tokens")
        if self.tokens is None and (
            self.target_tokens or self.weights or self.logprobs or self.advantages
        ):
            raise ValueError("target_tokens, weights, logprobs, advantages go with tokens")
        return self


class LossConfig(RequestBody):
    """``ppo``'s clipping range for the ratio of the model's probability to the sampler's."""

    clip_low_threshold: float = Field(default=0.8, ge=0, le=1)
    clip_high_threshold: float = Field(default=1.2, ge=1)


class LossRequest(RequestBody):
    examples: list[Example] = Field(min_length=1, max_length=MAX_BATCH)
    loss_fn: LossFn = "cross_entropy"
    loss_fn_config: LossConfig = Field(default_factory=LossConfig)


class LossResult(BaseModel):
    loss: float
    """The summed loss over every weighted token of the batch (Tinker's convention)."""
    mean_loss: float
    """``loss`` divided by the total token weight: comparable across batch sizes."""
    tokens: int
    per_example_loss: list[float]


MAX_LEARNING_RATE = 10.0
"""Far above any that trains; a larger one only drives the weights to overflow."""


class OptimStep(RequestBody):
    learning_rate: float = Field(default=1e-4, ge=0, le=MAX_LEARNING_RATE)
    beta1: float = Field(default=0.9, ge=0, lt=1)
    beta2: float = Field(default=0.95, ge=0, lt=1)
    eps: float = Field(default=1e-12, gt=0)
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip_norm: float | None = Field(default=None, gt=0)


class OptimResult(BaseModel):
    step: int
    grad_norm: float
    learning_rate: float
    loss: float
    """Mean loss per token over the batches accumulated into this step."""
    tokens: int


class SampleRequest(RequestBody):
    prompts: list[str | Annotated[list[Message], Field(min_length=1)]] = Field(
        min_length=1, max_length=MAX_PROMPTS
    )
    max_tokens: int = Field(default=64, ge=1, le=4096)
    temperature: float = Field(default=1.0, ge=0, le=10)
    top_p: float = Field(default=1.0, gt=0, le=1)
    top_k: int = Field(default=0, ge=0)
    """0 keeps every token."""
    stop: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list, max_length=16)
    seed: int | None = Field(default=None, ge=0, le=2**31 - 1)
    num_samples: int = Field(default=1, ge=1, le=64)


class Sequence(BaseModel):
    text: str
    tokens: list[int]
    logprobs: list[float]
    """Each generated token's log-probability under the model (temperature 1, no truncation)."""
    stop_reason: Literal["stop", "length"]


class PromptSamples(BaseModel):
    prompt_tokens: list[int]
    sequences: list[Sequence]


class SampleResult(BaseModel):
    samples: list[PromptSamples]
    elapsed_ms: float
    """The model's time for this call: not the wait behind earlier calls, nor loading."""


CheckpointName = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"),
    pattern_words(
        "must start with a letter or digit, then letters, digits, . _ or - only "
        "(100 characters at most)"
    ),
]


class SaveState(RequestBody):
    kind: CheckpointKind = "adapter"
    name: CheckpointName | None = None
    """Defaults to ``step-<n>`` (``merged-<n>`` for a merged model)."""
    overwrite: bool = False
    """Replace a checkpoint of the same name; without it, saving over one is 409."""


class CheckpointPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    name: str
    kind: CheckpointKind
    step: int
    path: str
    created_at: datetime


class CheckpointList(BaseModel):
    data: list[CheckpointPublic]
    count: int


class LoadState(RequestBody):
    checkpoint: CheckpointName
    run_id: uuid.UUID | None = None
    """Another of your runs to load from (same base model and LoRA shape); default this run."""
    with_optimizer: bool = False


class LoadResult(BaseModel):
    step: int
    with_optimizer: bool


class StepMetric(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    step: int
    loss: float
    tokens: int
    grad_norm: float
    learning_rate: float
    created_at: datetime


class MetricsPublic(BaseModel):
    run_id: uuid.UUID
    steps: list[StepMetric]


class FuturePublic(BaseModel):
    """A queued call (``?wait=false``): pending, or done with its result. A failed call's
    future answers with the error the call itself would have."""

    future_id: str
    operation: str
    status: Literal["pending", "done"]
    result: dict[str, Any] | None = None


# --- several calls in one request -------------------------------------------------------------

Operation = Literal[
    "forward_backward", "forward", "optim_step", "sample", "save_state", "load_state"
]
PrimitiveBody = LossRequest | OptimStep | SampleRequest | SaveState | LoadState

BODIES: dict[str, type[PrimitiveBody]] = {
    "forward_backward": LossRequest,
    "forward": LossRequest,
    "optim_step": OptimStep,
    "sample": SampleRequest,
    "save_state": SaveState,
    "load_state": LoadState,
}
"""Each primitive's request body, as its own route takes it."""

MAX_QUEUED = 1000
FutureId = Annotated[
    str,
    StringConstraints(pattern=r"^[A-Za-z0-9_-]{8,64}$"),
    pattern_words("must be 8 to 64 letters, digits, _ or -"),
]


class QueuedCall(RequestBody):
    """One primitive of ``POST /runs/{id}/queue``: its name, its body as its own route takes
    it, and optionally the future id to file its result under (a client that sends in the
    background hands out futures before the server has seen the call)."""

    operation: Operation
    body: dict[str, Any] = Field(default_factory=dict)
    future_id: FutureId | None = None

    def parsed_body(self) -> PrimitiveBody:
        """The body checked by the operation's own model; a ``ValidationError``'s locations
        are relative to ``body``."""
        return BODIES[self.operation].model_validate(self.body)


class QueueRequest(RequestBody):
    calls: list[dict[str, Any]] = Field(min_length=1, max_length=MAX_QUEUED)
    """Checked one at a time, in order, so that a bad call refuses only itself and what
    follows it."""

    checked_elsewhere = frozenset({"calls"})


class QueueRefusal(BaseModel):
    index: int
    """Which call (from 0); it and the calls after it were not queued."""
    status_code: int
    """What the call would have been answered alone: 400, 404, 409, 422..."""
    detail: Any


class QueueResult(BaseModel):
    futures: list[FuturePublic]
    """One per queued call, in order: every call before ``refused.index``, or all of them."""
    refused: QueueRefusal | None = None
