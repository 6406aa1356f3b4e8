"""Tinker's loss functions, per token; the caller sums them (no averaging, as in Tinker)."""

from __future__ import annotations

import torch

from promptlooper.training.backend.batches import Batch
from promptlooper.training.schemas import LossConfig, LossFn


def token_losses(
    loss_fn: LossFn, target_logprobs: torch.Tensor, batch: Batch, config: LossConfig
) -> torch.Tensor:
    """Each token's loss, already multiplied by its weight (0 on padding)."""
    if loss_fn == "cross_entropy":
        return -target_logprobs * batch.weights
    assert batch.logprobs is not None
    assert batch.advantages is not None
    ratio = torch.exp(target_logprobs - batch.logprobs)
    if loss_fn == "importance_sampling":
        return -(ratio * batch.advantages) * batch.weights
    clipped = torch.clamp(ratio, config.clip_low_threshold, config.clip_high_threshold)
    objective = torch.minimum(ratio * batch.advantages, clipped * batch.advantages)
    return -objective * batch.weights
