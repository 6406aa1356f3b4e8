"""Seeded sections give the same numbers whatever other threads draw meanwhile: each base
model has its own worker thread, and PyTorch's default generator is shared by all of them."""

from __future__ import annotations

import threading

import torch

from promptlooper.training.backend import tiny
from promptlooper.training.backend.rng import seeded


def _weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_the_tiny_model_is_the_same_while_another_thread_draws_random_numbers():
    tokenizer = tiny.build_tokenizer()
    reference = _weights(tiny.build_model(tokenizer, 64))
    stop = threading.Event()

    def draw() -> None:  # what another model's worker does: seeded sampling, dropout
        while not stop.is_set():
            with seeded(7):
                torch.rand(20_000)

    drawer = threading.Thread(target=draw)
    drawer.start()
    try:
        builds = [_weights(tiny.build_model(tokenizer, 64)) for _ in range(5)]
    finally:
        stop.set()
        drawer.join()

    for weights in builds:
        assert all(torch.equal(a, b) for a, b in zip(reference, weights, strict=True))


def test_a_seeded_section_restores_the_generator():
    torch.manual_seed(3)
    expected = torch.rand(4)
    torch.manual_seed(3)

    with seeded(99):
        torch.rand(10)

    assert torch.equal(torch.rand(4), expected)
