"""Turning API examples into aligned (input, target, weight) token rows.

Every example is checked before any of them reaches the model, so a bad one fails the whole
call and leaves the run untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from promptlooper.errors import BadExample
from promptlooper.training.backend.chat import assistant_spans
from promptlooper.training.schemas import Example, LossFn


@dataclass(slots=True)
class Row:
    inputs: list[int]
    targets: list[int]
    weights: list[float]
    logprobs: list[float] | None = None
    advantages: list[float] | None = None


@dataclass(slots=True)
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    targets: torch.Tensor
    weights: torch.Tensor
    logprobs: torch.Tensor | None
    advantages: torch.Tensor | None


def _shifted(values: list[float] | None, n: int, what: str, i: int) -> list[float] | None:
    if values is None:
        return None
    if len(values) != n:
        raise BadExample(i, f"{what} has {len(values)} entries, tokens has {n}")
    return values[1:]


def _from_tokens(example: Example, i: int) -> Row:
    tokens = example.tokens or []
    n = len(tokens)
    if example.target_tokens is not None:
        if len(example.target_tokens) != n:
            raise BadExample(i, "target_tokens must be as long as tokens")
        for what in ("weights", "logprobs", "advantages"):
            values = getattr(example, what)
            if values is not None and len(values) != n:
                raise BadExample(i, f"{what} must be as long as tokens")
        return Row(
            inputs=list(tokens),
            targets=list(example.target_tokens),
            weights=list(example.weights) if example.weights is not None else [1.0] * n,
            logprobs=example.logprobs,
            advantages=example.advantages,
        )
    weights = _shifted(example.weights, n, "weights", i)
    return Row(
        inputs=tokens[:-1],
        targets=tokens[1:],
        weights=weights if weights is not None else [1.0] * (n - 1),
        logprobs=_shifted(example.logprobs, n, "logprobs", i),
        advantages=_shifted(example.advantages, n, "advantages", i),
    )


def _from_messages(tokenizer: Any, example: Example, i: int) -> Row:
    messages = [m.model_dump() for m in example.messages or []]
    if not any(m["role"] == "assistant" for m in messages):
        raise BadExample(i, "messages need an assistant turn to train on")
    text, spans = assistant_spans(tokenizer, messages)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    ids: list[int] = encoded["input_ids"]
    mask = [
        1.0 if any(span.start <= start < span.stop for span in spans) else 0.0
        for start, _end in encoded["offset_mapping"]
    ]
    return Row(inputs=ids[:-1], targets=ids[1:], weights=mask[1:])


def encode(tokenizer: Any, examples: list[Example], *, max_len: int, loss_fn: LossFn) -> list[Row]:
    rows = []
    vocab = len(tokenizer)
    plain = [e.text or "" for e in examples if e.tokens is None and e.messages is None]
    # One call for every plain text: a fast tokenizer does a batch at once.
    encoded = iter(tokenizer(plain, add_special_tokens=True)["input_ids"] if plain else [])
    for i, example in enumerate(examples):
        if example.tokens is not None:
            row = _from_tokens(example, i)
        elif example.messages is not None:
            row = _from_messages(tokenizer, example, i)
        else:
            ids = next(encoded)
            row = Row(inputs=ids[:-1], targets=ids[1:], weights=[1.0] * (len(ids) - 1))
        if not row.inputs:
            raise BadExample(i, "needs at least two tokens")
        if len(row.inputs) + 1 > max_len:
            raise BadExample(
                i, f"{len(row.inputs) + 1} tokens, over the model's limit of {max_len}"
            )
        if any(t < 0 or t >= vocab for t in (*row.inputs, *row.targets)):
            raise BadExample(i, f"token ids must be in [0, {vocab})")
        if loss_fn != "cross_entropy" and (row.logprobs is None or row.advantages is None):
            raise BadExample(i, f"loss_fn {loss_fn} needs tokens with logprobs and advantages")
        rows.append(row)
    return rows


def collate(rows: list[Row], pad_id: int, device: torch.device) -> Batch:
    """Right-padded tensors; padding has weight 0 and is masked out of attention."""
    width = max(len(r.inputs) for r in rows)

    def pad(values: list[Any], fill: Any) -> list[Any]:
        return list(values) + [fill] * (width - len(values))

    def tensor(data: list[list[Any]], dtype: torch.dtype) -> torch.Tensor:
        return torch.tensor(data, dtype=dtype, device=device)

    rl = rows[0].logprobs is not None
    return Batch(
        input_ids=tensor([pad(r.inputs, pad_id) for r in rows], torch.long),
        attention_mask=tensor([pad([1] * len(r.inputs), 0) for r in rows], torch.long),
        targets=tensor([pad(r.targets, 0) for r in rows], torch.long),
        weights=tensor([pad(r.weights, 0.0) for r in rows], torch.float32),
        logprobs=tensor([pad(r.logprobs or [], 0.0) for r in rows], torch.float32) if rl else None,
        advantages=(
            tensor([pad(r.advantages or [], 0.0) for r in rows], torch.float32) if rl else None
        ),
    )
