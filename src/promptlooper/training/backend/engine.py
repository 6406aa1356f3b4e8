"""One base model in memory, with a LoRA adapter and an optimizer per training run.

Runs on the same base share its frozen weights through PEFT's named adapters: a call activates
its run's adapter, so only that adapter's parameters take part in the forward pass and receive
gradients. A host lives in its base model's worker process and runs one call at a time (see
``host``), which is what makes calls on one base model safe without locks.
"""

from __future__ import annotations

import json
import math
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from peft.utils import get_peft_model_state_dict, set_peft_model_state_dict
from safetensors.torch import load_file, save_file

from promptlooper.errors import BadExample, BadRequest, Conflict
from promptlooper.training.backend import batches, losses, sampling
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.backend.loading import LoadedModel, load, pick_device
from promptlooper.training.backend.rng import seeded
from promptlooper.training.layout import checkpoint_exists
from promptlooper.training.registry import ModelEntry
from promptlooper.training.schemas import (
    CheckpointKind,
    LossRequest,
    LossResult,
    OptimResult,
    OptimStep,
    SampleRequest,
    SampleResult,
)

ADAPTER_WEIGHTS = "adapter_model.safetensors"
OPTIMIZER_STATE = "optimizer.pt"
TRAINER_STATE = "trainer_state.json"
FUSED_ADAM_DEVICES = ("cpu", "cuda")
NOT_FINITE_LOSS = (
    "its loss is not finite (NaN or infinite): with ppo or importance_sampling, its logprobs"
    " may be far from the model's; otherwise the run's weights have diverged"
)


def lora_config(run: RunSpec) -> LoraConfig:
    return LoraConfig(
        r=run.rank,
        lora_alpha=run.alpha,
        lora_dropout=run.dropout,
        target_modules=list(run.target_modules),
        task_type="CAUSAL_LM",
    )


@dataclass(slots=True)
class RunState:
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.AdamW
    step: int = 0
    calls: int = 0
    """Calls that used randomness (dropout, sampling): the seed of the next one derives from it,
    so a run's randomness depends only on its own history, not on other runs'."""
    pending_loss: float = 0.0
    pending_weight: float = 0.0
    pending_tokens: int = 0
    pending_batches: int = 0

    def clear_pending(self) -> None:
        """Forget what was accumulated since the last step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.pending_loss = self.pending_weight = 0.0
        self.pending_tokens = self.pending_batches = 0


class ModelHost:
    def __init__(self, entry: ModelEntry, data_dir: Path, device: str) -> None:
        self.entry = entry
        self.data_dir = data_dir
        self.loaded: LoadedModel = load(entry, data_dir, pick_device(device))
        if self.loaded.device.type == "cpu" and entry.cpu_threads is not None:
            torch.set_num_threads(entry.cpu_threads)  # this process serves this model alone
        self.peft: PeftModel | None = None
        self.runs: dict[str, RunState] = {}
        self.active: str | None = None
        """The adapter PEFT has active; switching costs a walk over every module, so calls on
        the run that is already active skip it."""
        self.training: bool | None = False
        """Whether the model is in train mode (None: unknown, once an adapter was added). Each
        switch walks every module too, so it happens only when a call needs the other mode."""

    # --- runs -----------------------------------------------------------------------------------

    def _adapter_params(self, key: str) -> list[torch.nn.Parameter]:
        assert self.peft is not None
        marker = f".{key}."
        return [p for name, p in self.peft.named_parameters() if marker in name]

    @contextmanager
    def _rng(self, run: RunSpec, state: RunState) -> Iterator[None]:
        """A private RNG stream for the run's next random call; the global one is restored.
        A call that fails does not count: a refused batch leaves the run's randomness as it was."""
        devices = [self.loaded.device] if self.loaded.device.type == "cuda" else []
        with seeded(run.seed * 1_000_003 + state.calls, devices):
            yield
        state.calls += 1

    def ensure(self, run: RunSpec) -> RunState:
        state = self.runs.get(run.key)
        if state is not None:
            return state
        try:
            # PEFT still probes a transformers attribute deprecated in favour of another.
            with seeded(run.seed), warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                if self.peft is None:
                    self.peft = get_peft_model(
                        self.loaded.model, lora_config(run), adapter_name=run.key
                    )
                else:
                    self.peft.add_adapter(run.key, lora_config(run))
        except ValueError as exc:  # a target module the model does not have, say
            if self.peft is not None and run.key in self.peft.peft_config:
                self._delete_adapter(run.key)  # half-made: it must not linger
            raise BadRequest(f"LoRA config does not fit {self.entry.name}: {exc}") from exc
        params = self._adapter_params(run.key)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(
            params,
            lr=1e-4,
            betas=(0.9, 0.95),
            eps=1e-12,
            weight_decay=0.0,
            # One kernel for every tensor: PyTorch's default on CPU is a Python loop over
            # them, ~0.5 of ~9 ms per tiny-test step (the fused step: ~0.1 ms).
            fused=self.loaded.device.type in FUSED_ADAM_DEVICES,
        )
        state = RunState(params=params, optimizer=optimizer)
        self.runs[run.key] = state
        self.training = None  # the new adapter's layers are in PyTorch's default mode
        if run.resume_from is not None and Path(run.resume_from).is_dir():
            self._restore(run, state, Path(run.resume_from), with_optimizer=True)
        return state

    def _mode(self, model: torch.nn.Module, training: bool) -> None:
        if self.training is not training:
            model.train(training)
            self.training = training

    def _activate(self, run: RunSpec) -> tuple[PeftModel, RunState]:
        state = self.ensure(run)
        assert self.peft is not None
        if self.active != run.key:
            self.peft.set_adapter(run.key)
            self.active = run.key
        return self.peft, state

    def _delete_adapter(self, key: str) -> None:
        assert self.peft is not None
        with warnings.catch_warnings():  # "the active adapter was deleted": every call
            warnings.simplefilter("ignore", UserWarning)  # activates its own anyway
            self.peft.delete_adapter(key)
        self.active = None  # PEFT has activated some other adapter

    def drop(self, key: str) -> bool:
        """Forget a run; whether it was held."""
        if key in self.runs and self.peft is not None:
            self._delete_adapter(key)
        return self.runs.pop(key, None) is not None

    # --- forward / backward ---------------------------------------------------------------------

    def _losses(self, model: PeftModel, request: LossRequest) -> tuple[torch.Tensor, float, int]:
        """Each example's summed loss, the batch's total token weight and weighted tokens."""
        tokenizer = self.loaded.tokenizer
        rows = batches.encode(
            tokenizer, request.examples, max_len=self.entry.max_seq_len, loss_fn=request.loss_fn
        )
        batch = batches.collate(rows, tokenizer.pad_token_id, self.loaded.device)
        logits = model(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        target_logprobs = logprobs.gather(-1, batch.targets.unsqueeze(-1)).squeeze(-1)
        per_token = losses.token_losses(
            request.loss_fn, target_logprobs, batch, request.loss_fn_config
        )
        tokens = int((batch.weights != 0).sum().item())
        return per_token.sum(dim=1), float(batch.weights.sum().item()), tokens

    @staticmethod
    def _finite(per_example: torch.Tensor) -> list[float]:
        """Each example's loss, refusing the batch if one is NaN or infinite: its gradients
        would turn every weight of the adapter into NaN at the next step."""
        values = [float(v) for v in per_example.tolist()]
        for index, value in enumerate(values):
            if not math.isfinite(value):
                raise BadExample(index, NOT_FINITE_LOSS)
        return values

    @staticmethod
    def _result(values: list[float], weight: float, tokens: int) -> LossResult:
        loss = sum(values)
        return LossResult(
            loss=loss,
            mean_loss=loss / weight if weight else 0.0,
            tokens=tokens,
            per_example_loss=values,
        )

    def forward_backward(self, run: RunSpec, request: LossRequest) -> LossResult:
        model, state = self._activate(run)
        self._mode(model, True)
        with self._rng(run, state):
            per_example, weight, tokens = self._losses(model, request)
            values = self._finite(per_example)
            per_example.sum().backward()
        state.pending_loss += sum(values)
        state.pending_weight += weight
        state.pending_tokens += tokens
        state.pending_batches += 1
        return self._result(values, weight, tokens)

    def forward(self, run: RunSpec, request: LossRequest) -> LossResult:
        model, _state = self._activate(run)
        self._mode(model, False)
        with torch.no_grad():
            per_example, weight, tokens = self._losses(model, request)
        return self._result(self._finite(per_example), weight, tokens)

    def optim_step(self, run: RunSpec, params: OptimStep) -> OptimResult:
        _model, state = self._activate(run)
        if state.pending_batches == 0 or all(p.grad is None for p in state.params):
            raise BadRequest("No accumulated gradients: call forward_backward before optim_step")
        for group in state.optimizer.param_groups:
            group["lr"] = params.learning_rate
            group["betas"] = (params.beta1, params.beta2)
            group["eps"] = params.eps
            group["weight_decay"] = params.weight_decay
        trained = [p for p in state.params if p.grad is not None]
        norm = torch.nn.utils.get_total_norm([p.grad for p in trained])
        grad_norm = float(norm.item())
        if not math.isfinite(grad_norm):  # kept, they would stay so: nothing could step again
            state.clear_pending()
            raise BadRequest(
                "The accumulated gradients are NaN, infinite or too large to step on (their"
                " norm is not finite): they were discarded and no step was made"
            )
        if params.grad_clip_norm:  # scaling every gradient by 1 otherwise costs a pass
            torch.nn.utils.clip_grads_with_norm_(trained, params.grad_clip_norm, norm)
        state.optimizer.step()
        state.step += 1
        weight = state.pending_weight
        result = OptimResult(
            step=state.step,
            grad_norm=grad_norm,
            learning_rate=params.learning_rate,
            loss=state.pending_loss / weight if weight else 0.0,
            tokens=state.pending_tokens,
        )
        state.clear_pending()
        return result

    # --- sampling -------------------------------------------------------------------------------

    def sample(self, run: RunSpec | None, request: SampleRequest) -> SampleResult:
        if run is None:  # the base model alone
            if self.peft is None:
                return sampling.sample(self.loaded, self.entry, self.loaded.model, request)
            self._mode(self.peft, False)
            with self.peft.disable_adapter():
                return sampling.sample(self.loaded, self.entry, self.peft, request)
        model, state = self._activate(run)
        self._mode(model, False)
        if request.seed is not None:
            return sampling.sample(self.loaded, self.entry, model, request)
        with self._rng(run, state):
            return sampling.sample(self.loaded, self.entry, model, request)

    # --- checkpoints ----------------------------------------------------------------------------

    def save_state(
        self, run: RunSpec, kind: CheckpointKind, folder: Path, name: str | None, overwrite: bool
    ) -> tuple[int, str]:
        """Write the checkpoint to ``folder/name``, replacing one of the same name only when
        asked to (``Conflict`` otherwise); returns the step saved and the name (by default
        ``step-<n>``, or ``merged-<n>``, with the step this call saw, which for a pipelined
        call may be later than when it was sent)."""
        _model, state = self._activate(run)
        name = name or (f"step-{state.step}" if kind == "adapter" else f"merged-{state.step}")
        target = folder / name
        if target.exists() and not overwrite:
            raise Conflict(checkpoint_exists(name))
        staging = folder / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        try:
            if kind == "adapter":
                self._save_adapter(run, state, staging)
            else:
                self._save_merged(run, staging)
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return state.step, name

    def _save_adapter(self, run: RunSpec, state: RunState, folder: Path) -> None:
        assert self.peft is not None
        weights = get_peft_model_state_dict(self.peft, adapter_name=run.key)
        save_file(
            {k: v.detach().contiguous().cpu() for k, v in weights.items()}, folder / ADAPTER_WEIGHTS
        )
        config = self.peft.peft_config[run.key]
        config.save_pretrained(str(folder))
        torch.save(state.optimizer.state_dict(), folder / OPTIMIZER_STATE)
        (folder / TRAINER_STATE).write_text(
            json.dumps({"step": state.step, "calls": state.calls, "base_model": self.entry.name})
        )
        self.loaded.tokenizer.save_pretrained(folder)

    def _save_merged(self, run: RunSpec, folder: Path) -> None:
        """A standalone model: a fresh copy of the base with this run's adapter merged in (the
        shared base stays as it is)."""
        assert self.peft is not None
        weights = get_peft_model_state_dict(self.peft, adapter_name=run.key)
        fresh = load(self.entry, self.data_dir, torch.device("cpu"))
        with seeded(0), warnings.catch_warnings():  # the LoRA's random init is overwritten
            warnings.simplefilter("ignore", FutureWarning)
            peft = get_peft_model(fresh.model, lora_config(run), adapter_name="merge")
        set_peft_model_state_dict(
            peft, {k: v.detach().cpu() for k, v in weights.items()}, adapter_name="merge"
        )
        merged = peft.merge_and_unload()
        merged.save_pretrained(folder)
        fresh.tokenizer.save_pretrained(folder)

    def load_state(self, run: RunSpec, source: Path, with_optimizer: bool) -> int:
        _model, state = self._activate(run)
        return self._restore(run, state, source, with_optimizer=with_optimizer)

    def _restore(self, run: RunSpec, state: RunState, source: Path, *, with_optimizer: bool) -> int:
        assert self.peft is not None
        saved = json.loads((source / "adapter_config.json").read_text())
        if saved.get("r") != run.rank or sorted(saved.get("target_modules") or []) != sorted(
            run.target_modules
        ):
            raise BadRequest("checkpoint LoRA shape (rank, target modules) differs from this run's")
        weights = load_file(str(source / ADAPTER_WEIGHTS), device=str(self.loaded.device))
        with torch.no_grad():
            set_peft_model_state_dict(self.peft, weights, adapter_name=run.key)
        trainer = json.loads((source / TRAINER_STATE).read_text())
        state.clear_pending()
        if with_optimizer:
            optimizer_state = torch.load(
                source / OPTIMIZER_STATE, map_location=self.loaded.device, weights_only=True
            )
            state.optimizer.load_state_dict(optimizer_state)
            state.calls = int(trainer.get("calls", 0))
        else:
            state.optimizer.state.clear()
        state.step = int(trainer.get("step", 0))
        return state.step
