"""Generation with per-token logprobs and a stop reason, on top of ``generate``."""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import Any

import torch

from promptlooper.errors import BadRequest
from promptlooper.training.backend.chat import render
from promptlooper.training.backend.loading import LoadedModel
from promptlooper.training.backend.rng import seeded
from promptlooper.training.registry import ModelEntry
from promptlooper.training.schemas import (
    Message,
    PromptSamples,
    SampleRequest,
    SampleResult,
    Sequence,
)


def prompt_tokens(tokenizer: Any, prompt: str | list[Message]) -> list[int]:
    if isinstance(prompt, str):
        return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])
    text = render(tokenizer, [m.model_dump() for m in prompt], generation_prompt=True)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    cuts = [text.index(s) for s in stops if s in text]
    return (text[: min(cuts)], True) if cuts else (text, False)


def sample(
    loaded: LoadedModel, entry: ModelEntry, model: Any, request: SampleRequest
) -> SampleResult:
    started = time.perf_counter()
    tokenizer = loaded.tokenizer
    encoded = [prompt_tokens(tokenizer, p) for p in request.prompts]
    for i, ids in enumerate(encoded):
        if not ids:
            raise BadRequest(f"prompt {i} is empty")
        if len(ids) + request.max_tokens > entry.max_seq_len:
            raise BadRequest(
                f"prompt {i}: {len(ids)} tokens plus max_tokens {request.max_tokens} exceed the"
                f" model's limit of {entry.max_seq_len}"
            )
    devices = [loaded.device] if loaded.device.type == "cuda" else []
    randomness = seeded(request.seed, devices) if request.seed is not None else nullcontext()
    samples = []
    with randomness, torch.no_grad():
        for ids in encoded:
            samples.append(_one_prompt(loaded, model, ids, request))
    return SampleResult(samples=samples, elapsed_ms=(time.perf_counter() - started) * 1000)


def _one_prompt(
    loaded: LoadedModel, model: Any, ids: list[int], request: SampleRequest
) -> PromptSamples:
    tokenizer = loaded.tokenizer
    input_ids = torch.tensor([ids], device=loaded.device)
    greedy = request.temperature == 0
    out = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        max_new_tokens=request.max_tokens,
        do_sample=not greedy,
        temperature=None if greedy else request.temperature,
        top_p=None if greedy else request.top_p,
        top_k=None if greedy or request.top_k == 0 else request.top_k,
        num_return_sequences=request.num_samples,
        stop_strings=request.stop or None,
        tokenizer=tokenizer if request.stop else None,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        return_dict_in_generate=True,
        output_logits=True,
    )
    steps = torch.stack(out.logits, dim=1).float().log_softmax(dim=-1)  # [n, new, vocab]
    sequences = []
    for n, row in enumerate(out.sequences):
        generated = row[len(ids) :].tolist()
        stopped = False
        if tokenizer.eos_token_id in generated:
            generated = generated[: generated.index(tokenizer.eos_token_id)]
            stopped = True
        logprobs = [float(steps[n, t, tok]) for t, tok in enumerate(generated)]
        text = tokenizer.decode(generated, skip_special_tokens=True)
        text, hit = _cut_at_stop(text, request.stop)
        sequences.append(
            Sequence(
                text=text,
                tokens=generated,
                logprobs=logprobs,
                stop_reason="stop" if stopped or hit else "length",
            )
        )
    return PromptSamples(prompt_tokens=ids, sequences=sequences)
