"""``TrainingBackend``: one worker process per base model, the model loaded there on demand.

Why a process rather than a thread: a step on a small model spends much of its time in
PyTorch's Python-level dispatch, holding the GIL, so in the server's process every request the
event loop handled took turns with it and lengthened the step (a tiny model trained at half
its plain-loop speed behind the API). In a process of its own the step runs beside the
server, which only pickles the request and the result.

Each base model has one worker process (``worker``), fed through a pipe: calls run in arrival
order (a caller that does not wait still gets FIFO semantics, which is what makes pipelining
safe) and its state (the base weights, every run's adapter and optimizer) lives there. It is
started as ``python -m``, not through multiprocessing, whose spawn start re-imports the
caller's main module (a script without a ``__main__`` guard would run again in the child).
A worker that dies (killed for memory, say) fails the calls it owed with ``Unavailable`` and is
replaced on the next call, which rebuilds its run from the last saved checkpoint, as a
restarted server would. This module does not import torch; the worker imports the engine with
its first call.

With a Ray address, each base model's host runs instead in a Ray actor on the cluster
(``actor``), placed where the resources it asks for are (``placement``), with the same
semantics; this module imports Ray only then.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
import os
import subprocess
import sys
import threading
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptlooper.errors import Unavailable
from promptlooper.training.registry import ModelEntry

if TYPE_CHECKING:
    from promptlooper.training.backend.actor import ActorHost

WORKER_MODULE = "promptlooper.training.backend.worker"
STOP_TIMEOUT = 60.0
"""Seconds a stopping worker may take to finish the calls it was sent."""


@dataclass(frozen=True, slots=True)
class RunSpec:
    """What the host needs to (re)build a run's adapter: sent with every call, so a process
    that restarted, or never saw the run, rebuilds it on first use."""

    key: str
    seed: int
    rank: int
    alpha: float
    dropout: float
    target_modules: tuple[str, ...]
    resume_from: str | None = None
    """An adapter checkpoint (with optimizer state) to rebuild from instead of a fresh init."""


class _Worker:
    """One base model's worker process, and the calls it still owes answers to."""

    def __init__(self, entry: ModelEntry, data_dir: Path, device: str) -> None:
        self.entry = entry
        calls_in, calls_out = os.pipe()
        answers_in, answers_out = os.pipe()
        # The worker imports promptlooper the way this process did, wherever that was from.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", WORKER_MODULE, str(calls_in), str(answers_out)],
            pass_fds=(calls_in, answers_out),
            stdin=subprocess.DEVNULL,
            env=env,
        )
        os.close(calls_in)
        os.close(answers_out)
        self._calls = Connection(calls_out, readable=False)
        self._answers = Connection(answers_in, writable=False)
        self._calls.send((entry, data_dir, device))
        self._owed: dict[int, concurrent.futures.Future[Any]] = {}
        self._ids = itertools.count()
        self._lock = threading.Lock()
        self.alive = True
        self._reader = threading.Thread(
            target=self._read, name=f"train-{entry.name}-answers", daemon=True
        )
        self._reader.start()

    def submit(self, method: str, args: tuple[Any, ...]) -> concurrent.futures.Future[Any]:
        """A call sent runs to its end, so its future is running and cannot be cancelled: a
        caller that stops waiting (a sweep's timeout) only drops the answer, which the reader
        then delivers to nobody instead of failing on a cancelled future and going mute."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            if not self.alive:
                raise WorkerGone
            call_id = next(self._ids)
            self._owed[call_id] = future
            try:
                self._calls.send((call_id, method, args))
            except OSError as exc:  # it died before reading this; the reader will notice
                del self._owed[call_id]
                raise WorkerGone from exc
        return future

    def _read(self) -> None:
        while True:
            try:
                answers = self._answers.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                futures = [self._owed.pop(call_id) for call_id, _ok, _value in answers]
            for future, (_call_id, ok, value) in zip(futures, answers, strict=True):
                if ok:
                    future.set_result(value)
                else:
                    future.set_exception(value)
        with self._lock:
            self.alive = False
            owed, self._owed = list(self._owed.values()), {}
            self._calls.close()  # a replacement gets pipes of its own: these are done
        self._answers.close()
        code = self.process.wait()
        for future in owed:
            future.set_exception(
                Unavailable(
                    f"the training worker for {self.entry.name} stopped (exit code {code};"
                    " killed for memory?): its runs lost what was not saved and resume"
                    " from their last checkpoint"
                )
            )

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """Let the calls already sent finish, then end the process (killed after ``timeout``)."""
        with self._lock:
            if self.alive:
                with contextlib.suppress(OSError):
                    self._calls.send(None)
            self.alive = False
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self._reader.join()  # it closes the pipes


class WorkerGone(Exception):
    """The worker (a process or an actor) died before the call could be sent."""


def device_for(entry: ModelEntry, device: str) -> str:
    """The device a model runs on: its registry entry's, else the backend's setting."""
    return entry.device or device


def placement(entry: ModelEntry, device: str) -> dict[str, float]:
    """What a model's host actor asks the Ray cluster for: a GPU when the model runs on CUDA
    (``auto`` asks for none: on a cluster, where it runs is said, not guessed), else as many
    CPUs as the threads it computes with (one unless the entry says)."""
    if device_for(entry, device).startswith("cuda"):
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": entry.cpu_threads or 1, "num_gpus": 0}


class TrainingBackend:
    _shared: dict[tuple[Path, str], TrainingBackend] = {}  # noqa: RUF012 - process-wide on purpose
    _shared_lock = threading.Lock()

    @classmethod
    def shared(
        cls, data_dir: Path, device: str = "auto", ray_address: str | None = None
    ) -> TrainingBackend:
        """The process's backend for this DATA_DIR: the API's trainer and the sweeps' ``local``
        provider use one, so a base model is loaded once whichever of them asks first."""
        key = (data_dir.resolve(), device, ray_address or "")
        with cls._shared_lock:
            if key not in cls._shared:
                cls._shared[key] = cls(data_dir, device, ray_address)
            return cls._shared[key]

    def __init__(
        self, data_dir: Path, device: str = "auto", ray_address: str | None = None
    ) -> None:
        """``ray_address``: run each base model's host in an actor on that Ray cluster rather
        than in a worker process here (DATA_DIR must then be the same path on every node
        that may hold one: checkpoints are written and read where the model runs)."""
        self.data_dir = data_dir
        self.device = device
        self.ray_address = ray_address
        self._workers: dict[str, _Worker | ActorHost] = {}
        self._lock = threading.Lock()

    def submit(self, entry: ModelEntry, method: str, *args: Any) -> concurrent.futures.Future[Any]:
        """Queue ``ModelHost.<method>(*args)`` on the base model's worker. The worker starts,
        and loads the model, with the first call: nothing here waits for PyTorch."""
        with self._lock:
            worker = self._workers.get(entry.name)
            if worker is None or not worker.alive:  # none yet, or it died: a new one
                worker = self._workers[entry.name] = self._start(entry)
        try:
            return worker.submit(method, args)
        except WorkerGone:
            with self._lock:
                if self._workers.get(entry.name) is worker:
                    del self._workers[entry.name]
            return self.submit(entry, method, *args)

    def _start(self, entry: ModelEntry) -> _Worker | ActorHost:
        device = device_for(entry, self.device)
        if self.ray_address is None:
            return _Worker(entry, self.data_dir, device)
        from promptlooper.training.backend.actor import ActorHost

        return ActorHost(entry, self.data_dir, device, self.ray_address)

    def forget(self, entry: ModelEntry, key: str) -> concurrent.futures.Future[bool] | None:
        """Drop a run's adapter and optimizer; the future says whether the worker held them.
        None when no worker is running for the model."""
        with self._lock:
            worker = self._workers.get(entry.name)
        if worker is None or not worker.alive:
            return None
        return self.submit(entry, "drop", key)

    def shutdown(self) -> None:
        """Let the calls already queued finish and stop the workers; a later ``shared()`` for
        the same DATA_DIR starts afresh."""
        with self._lock:
            workers, self._workers = list(self._workers.values()), {}
        for worker in workers:
            worker.stop()
        with self._shared_lock:
            for key, backend in list(self._shared.items()):
                if backend is self:
                    del self._shared[key]
