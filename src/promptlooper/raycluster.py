"""Joining the Ray cluster that sweeps and model hosts run on, once per process.

Both a sweep's batches (``sweeps.engine.distributed``) and a base model's host actor
(``training.backend.actor``) need the same connection, in PromptLooper's own namespace, where
its named actors (a sweep's coordinator, a model's host) are found by name. Importing this
module imports Ray; nothing imports it until a Ray address is configured.
"""

from __future__ import annotations

import logging
import threading

import ray

from promptlooper.errors import ConfigurationError

NAMESPACE = "promptlooper"
"""The Ray namespace PromptLooper's named actors live in."""

_connected: list[str] = []
_joining = threading.Lock()
"""Held while joining: a server may start two sweeps (or a sweep and a model host) at once,
each joining from its thread."""


def connect(address: str) -> None:
    """Join the cluster at ``address`` (once per process; another address is refused)."""
    with _joining:
        if _connected:
            if _connected[0] != address:
                raise ConfigurationError(f"already connected to the Ray cluster at {_connected[0]}")
            return
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                log_to_driver=False,
                logging_level=logging.WARNING,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ConfigurationError(f"cannot join the Ray cluster at {address}: {exc}") from exc
        _connected.append(address)


def joined() -> bool:
    """Whether this process has joined a cluster (asks nothing of it)."""
    return bool(_connected)


def disconnect() -> None:
    if _connected:
        ray.shutdown()
        _connected.clear()
