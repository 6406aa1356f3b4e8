"""A base model's host as a Ray actor, for a backend given a Ray address.

The actor holds the very ``Host`` a worker process holds (``worker.Host``: the model, every
run's adapter and optimizer) and runs on whichever node has the resources ``placement`` asks
for, so generation and training run there while the server or CLI that asked runs elsewhere.
The worker process's semantics hold:

- **order**: the actor runs one call at a time, and Ray runs the calls of one caller's handle
  in the order they were made; calls are made under a lock, so in the order ``submit`` was
  called (a caller that does not wait still gets FIFO semantics);
- **futures**: ``submit`` returns a running ``concurrent.futures.Future`` at once;
- **errors**: the host's exceptions come back as values and are raised from the future as they
  would be from a worker process (their types intact), not wrapped in Ray's;
- **a lost actor** (its node died, say): the calls it owed fail with ``Unavailable`` and the
  next call starts a new actor, which rebuilds its runs from their last checkpoints.

The actor is named ``model-<base model>-<suffix>`` in PromptLooper's namespace, so the
cluster's status can list it; it belongs to the process that started it and ends with it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import threading
import uuid
import weakref
from pathlib import Path
from typing import Any

import ray
from ray.exceptions import RayActorError, RayError

from promptlooper.errors import Unavailable
from promptlooper.raycluster import NAMESPACE, connect
from promptlooper.training.backend.host import STOP_TIMEOUT, WorkerGone, placement
from promptlooper.training.backend.worker import Host
from promptlooper.training.registry import ModelEntry

HOST_PREFIX = "model-"
"""The names of model host actors start with this."""

_started: weakref.WeakSet[ActorHost] = weakref.WeakSet()


@ray.remote(max_restarts=0, max_task_retries=0)
class HostActor:
    """A base model's ``Host`` on a cluster node; one call at a time, in the caller's order."""

    def __init__(self, entry: ModelEntry, data_dir: Path, device: str) -> None:
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # as in a worker process
        self._host = Host(entry, data_dir, device)

    def call(self, method: str, args: tuple[Any, ...]) -> tuple[bool, Any]:
        try:
            return True, self._host.call(method, args)
        except Exception as exc:
            return False, exc

    def placed(self) -> dict[str, Any]:
        """Where this actor runs (and so its model) and the resources it holds there."""
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(), "resources": context.get_assigned_resources()}


class ActorHost:
    """One base model's host actor, as ``TrainingBackend`` uses a worker process."""

    def __init__(self, entry: ModelEntry, data_dir: Path, device: str, address: str) -> None:
        connect(address)
        self.entry = entry
        self.name = f"{HOST_PREFIX}{entry.name}-{uuid.uuid4().hex[:8]}"
        self.actor = HostActor.options(  # type: ignore[attr-defined]
            name=self.name, namespace=NAMESPACE, **placement(entry, device)
        ).remote(entry, data_dir, device)
        self.alive = True
        self._lock = threading.Lock()
        _started.add(self)

    def submit(self, method: str, args: tuple[Any, ...]) -> concurrent.futures.Future[Any]:
        """As ``_Worker.submit``: the call runs to its end; a caller that stops waiting only
        drops the answer."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            if not self.alive:
                raise WorkerGone
            answer = self.actor.call.remote(method, args).future()
        answer.add_done_callback(lambda done: self._deliver(done, future))
        return future

    def _deliver(
        self, answer: concurrent.futures.Future[Any], future: concurrent.futures.Future[Any]
    ) -> None:
        try:
            ok, value = answer.result()
        except RayActorError as exc:
            self.alive = False
            future.set_exception(
                Unavailable(
                    f"the training host for {self.entry.name} on the Ray cluster stopped"
                    f" ({type(exc).__name__}): its runs lost what was not saved and resume"
                    " from their last checkpoint"
                )
            )
        except RayError as exc:  # the answer could not come back (it would not pickle, say)
            future.set_exception(RuntimeError(f"the training host for {self.entry.name}: {exc}"))
        else:
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let the calls already made finish (a last one queued behind them answers when they
        have), then end the actor."""
        with self._lock:
            self.alive = False
        with contextlib.suppress(RayError):  # a timeout, or an actor already gone
            ray.get(self.actor.placed.remote(), timeout=timeout)
        with contextlib.suppress(RayError):
            ray.kill(self.actor)


def placements(timeout: float = 30.0) -> list[dict[str, Any]]:
    """The live host actors this process started: each one's model, name, node and the
    resources the cluster reserved for it (what a CLI prints after placing a model)."""
    found = []
    for host in sorted(_started, key=lambda host: host.name):
        if host.alive:
            with contextlib.suppress(RayError):
                placed = ray.get(host.actor.placed.remote(), timeout=timeout)
                found.append({"model": host.entry.name, "actor": host.name, **placed})
    return found
