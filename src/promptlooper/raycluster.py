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


CONNECT_SECONDS = 20.0
"""How long joining may take by default (the ``RAY_CONNECT_SECONDS`` setting): Ray itself
retries an address where nothing answers for minutes."""


def connect(address: str, timeout: float = CONNECT_SECONDS) -> None:
    """Join the cluster at ``address`` (once per process; another address is refused), or
    fail within ``timeout`` seconds."""
    with _joining:
        if _connected:
            if _connected[0] != address:
                raise ConfigurationError(f"already connected to the Ray cluster at {_connected[0]}")
            return
        outcome: list[BaseException | None] = []
        # ``ray.init`` has no timeout of its own: it runs in a daemon thread, abandoned if it
        # does not return in time (the process then ends or stays unjoined).
        joining = threading.Thread(target=_init, args=(address, outcome), daemon=True)
        joining.start()
        joining.join(timeout)
        if not outcome:
            raise ConfigurationError(
                f"cannot join the Ray cluster at {address}: no answer within {timeout:g} s "
                "(nothing listening there, or a cluster that refuses RAY_AUTH_TOKEN; "
                "RAY_CONNECT_SECONDS sets the wait)"
            )
        error = outcome[0]
        if isinstance(error, ConnectionError):
            raise ConfigurationError(
                f"cannot join the Ray cluster at {address}: {error} (is RAY_AUTH_TOKEN the "
                "cluster's token, where it requires one?)"
            ) from error
        if isinstance(error, RuntimeError | ValueError):
            message = f"cannot join the Ray cluster at {address}: {error}"
            raise ConfigurationError(message) from error
        if error is not None:
            raise error
        logging.getLogger("ray").setLevel(logging.WARNING)  # joined: Ray's warnings matter again
        _connected.append(address)


def _init(address: str, outcome: list[BaseException | None]) -> None:
    """``ray.init`` with its ``ray`` logger at ERROR while it joins: run from this thread
    (not the main one), it warns that it cannot set its SIGTERM handler, which is no concern of
    a command that sets its own, and a failure to join is said in one line by ``connect``."""
    try:
        ray.init(
            address=address,
            namespace=NAMESPACE,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
    except BaseException as exc:  # handed to the thread that waits, which raises it
        outcome.append(exc)
    else:
        outcome.append(None)


def joined() -> bool:
    """Whether this process has joined a cluster (asks nothing of it)."""
    return bool(_connected)


def disconnect() -> None:
    if _connected:
        ray.shutdown()
        _connected.clear()
