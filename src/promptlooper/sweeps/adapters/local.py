"""``local``: generate with a model on this machine, from the training API's registry or from a
checkpoint of a training run, so a sweep can compare a base model with its fine-tunes.

- ``local:smollm2-135m-instruct``: a registry model as it ships;
- ``local:<run id>@<checkpoint>``: a run's saved adapter (on its base model) or merged model.

Prompts are sent as a chat (the stage's ``system`` first, then the prompt as the user's turn)
rendered with the model's chat template. Params: ``temperature`` (default 0, greedy),
``max_tokens`` (default 128), ``top_p``, ``top_k``, ``seed``, ``stop``. Generation runs on the
same per-model worker as training, one call at a time, so a sweep's calls to one model take
turns here (``turn``), the first turn waiting for the model to load. A call's
``timeout`` is then the model's time for it, whatever the queue and however busy the machine;
a call sent to the worker runs to its end even when its caller stops waiting, so a timeout that
counted the queue would only queue a retry behind it. A result's latency is the model's time
for its call.

With a Ray cluster configured for the process running the sweep (``RAY_ADDRESS`` or
``--ray``), the model's worker is a host actor on the cluster instead (see
``training.backend.actor``): the same calls, made on whichever node has the resources the
model asks for.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from promptlooper.errors import Invalid
from promptlooper.sweeps.adapters.base import AdapterError, AdapterResponse, ProviderConfig
from promptlooper.sweeps.adapters.registry import register_adapter
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.backend.worker import LOAD
from promptlooper.training.layout import checkpoint_root, parse_checkpoint_ref
from promptlooper.training.registry import ModelEntry, ModelRegistry, ModelSource, load_registry
from promptlooper.training.schemas import Message, SampleRequest

SAMPLING_PARAMS = ("max_tokens", "temperature", "top_p", "top_k", "seed", "stop")


class LocalAdapter:
    def __init__(self, config: ProviderConfig) -> None:
        options = config.options
        self.data_dir = Path(options.get("data_dir") or ".promptlooper")
        self.registry: ModelRegistry = load_registry(options.get("models_file"))
        self.backend = TrainingBackend.shared(
            self.data_dir, options.get("device", "auto"), options.get("ray_address") or None
        )
        self._turns: dict[str, asyncio.Lock] = {}
        self._loaded: set[str] = set()

    def _target(self, model: str) -> tuple[ModelEntry, RunSpec | None]:
        ref = parse_checkpoint_ref(model)
        if ref is None:
            return self.registry.get(model), None
        run_id, name = ref
        folder = checkpoint_root(self.data_dir, run_id) / name
        if (folder / "config.json").is_file():  # a merged, standalone model
            entry = ModelEntry(
                name=f"{run_id}@{name}", source=ModelSource(path=str(folder)), max_seq_len=4096
            )
            return entry, None
        state = folder / "trainer_state.json"
        if not state.is_file():
            raise Invalid(f"local:{model}: no checkpoint {name!r} saved for run {run_id}")
        base = self.registry.get(json.loads(state.read_text())["base_model"])
        lora = json.loads((folder / "adapter_config.json").read_text())
        stamp = int(state.stat().st_mtime_ns)
        spec = RunSpec(
            key=f"ckpt_{run_id.hex}_{abs(hash((name, stamp)))}",
            seed=0,
            rank=int(lora["r"]),
            alpha=float(lora["lora_alpha"]),
            dropout=0.0,
            target_modules=tuple(sorted(lora["target_modules"])),
            resume_from=str(folder),
        )
        return base, spec

    @contextlib.asynccontextmanager
    async def turn(self, model: str) -> AsyncIterator[None]:
        """This sweep's turn at the model's worker, the base model loaded (once per adapter:
        a worker that died and restarted loads it again inside a call). Calls to other
        models, with workers of their own, do not wait."""
        entry, _spec = self._target(model)
        async with self._turns.setdefault(entry.name, asyncio.Lock()):
            if entry.name not in self._loaded:
                try:
                    await asyncio.wrap_future(self.backend.submit(entry, LOAD))
                except Exception as exc:  # no PyTorch, unreadable weights: the call says it
                    raise AdapterError(f"local:{model}: {exc}") from exc
                self._loaded.add(entry.name)
            yield

    async def complete(
        self, prompt: str, model: str, params: dict[str, Any], *, system: str | None = None
    ) -> AdapterResponse:
        entry, spec = self._target(model)
        chat = [Message(role="user", content=prompt)]
        if system:
            chat.insert(0, Message(role="system", content=system))
        sampling = {k: params[k] for k in SAMPLING_PARAMS if params.get(k) is not None}
        sampling.setdefault("temperature", 0.0)
        sampling.setdefault("max_tokens", 128)
        if isinstance(sampling.get("stop"), str):
            sampling["stop"] = [sampling["stop"]]
        try:
            request = SampleRequest(prompts=[chat], **sampling)
        except ValueError as exc:
            raise AdapterError(f"local:{model}: bad sampling params: {exc}") from exc
        try:
            result = await asyncio.wrap_future(self.backend.submit(entry, "sample", spec, request))
        except Invalid:
            raise
        except Exception as exc:  # a bad checkpoint, an over-long prompt: not worth retrying
            raise AdapterError(f"local:{model}: {exc}") from exc
        samples = result.samples[0]
        sequence = samples.sequences[0]
        return AdapterResponse(
            text=sequence.text.strip(),
            tokens_in=len(samples.prompt_tokens),
            tokens_out=len(sequence.tokens),
            latency_ms=result.elapsed_ms,
            model=model,
            finish_reason=sequence.stop_reason,
        )

    async def list_models(self) -> list[str]:
        return self.registry.names()

    async def test_connection(self) -> bool:
        return True

    async def aclose(self) -> None:
        return None


@register_adapter("local")
def _factory(config: ProviderConfig) -> LocalAdapter:
    return LocalAdapter(config)
