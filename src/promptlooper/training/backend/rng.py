"""PyTorch's default random generator is one per process, shared by every thread. A seeded
section in one thread could otherwise draw numbers that another thread consumes meanwhile
(building a model initialises its weights at random before loading them), and "same seed, same
result" would depend on timing: a ``local:`` sweep once got a different ``tiny-test`` base, and
garbage from an adapter trained on the usual one, because a merged model was loading on another
thread while it was built. Base models now run in worker processes of their own, but anything
that loads a model in a process with other threads (tests, scripts) still needs this.

Every section that seeds or draws from the default generator holds ``GLOBAL_RNG``; it is
reentrant, so a seeded section may load a model.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch

GLOBAL_RNG = threading.RLock()


@contextmanager
def seeded(seed: int, devices: Sequence[torch.device] = ()) -> Iterator[None]:
    """Draw from the default generator seeded with ``seed``; its previous state (and that of
    ``devices``' CUDA generators) comes back afterwards."""
    with GLOBAL_RNG, torch.random.fork_rng(devices=list(devices)):
        # Not torch.manual_seed: without CUDA in use it queues a seeding of every CUDA device,
        # with a formatted stack trace, for later; a training step paid for that every call.
        torch.default_generator.manual_seed(seed)
        for device in devices:
            torch.cuda.default_generators[device.index or 0].manual_seed(seed)
        yield
