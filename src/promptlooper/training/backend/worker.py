"""A base model's worker process: ``python -m promptlooper.training.backend.worker CALLS ANSWERS``.

The server starts it (see ``host``) with two pipe descriptors. The first message names the
model; each later one is ``(call id, ModelHost method, args)``, answered on the other pipe with
a list of ``(call id, ok, result or exception)`` in the order the calls came; ``None``, or the
server going away, ends the process. Calls are read by a thread of their own so that a large
request never waits in the pipe, and with it the server's sender, while a step runs.

While more calls wait, answers are held (for at most ``HOLD_SECONDS``) and sent together: each
message wakes the server's reader and event loop on another core, and on a small machine those
wake-ups slow the step that runs meanwhile (a queued ``tiny-test`` loop took ~4 % more of the
worker's CPU per step answering each call at once). An answer is late by at most the hold, and
only while the worker has more to do.
"""

from __future__ import annotations

import importlib
import os
import queue
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from promptlooper.errors import ConfigurationError

ENGINE_MODULE = "promptlooper.training.backend.engine"
HOLD_SECONDS = 0.05
"""How long an answer may wait for the ones after it while more calls are queued."""


LOAD = "load"
"""The call that only loads the model, so that a caller can wait for that apart from its
calls' own time."""


class Host:
    """A base model's ``ModelHost``, loaded with the first call that needs it: what a worker
    process (here) and a Ray actor (``actor``) each hold and dispatch calls to."""

    def __init__(self, entry: Any, data_dir: Any, device: str) -> None:
        self._args = (entry, data_dir, device)
        self._host: Any = None

    def call(self, method: str, args: tuple[Any, ...]) -> Any:
        """``ModelHost.<method>(*args)``; an exception carries where it was raised."""
        try:
            if self._host is None and method == "drop":
                return False  # nothing loaded, nothing held
            if self._host is None:
                self._host = _load(*self._args)
            if method == LOAD:
                return True  # loaded: what the caller waited for
            return getattr(self._host, method)(*args)
        except Exception as exc:
            exc.add_note(f"in the training worker:\n{traceback.format_exc()}")
            raise


def _load(entry: Any, data_dir: Any, device: str) -> Any:
    try:
        engine = importlib.import_module(ENGINE_MODULE)
    except ImportError as exc:
        raise ConfigurationError(
            f"training needs PyTorch, transformers and PEFT ({exc.msg}): "
            "pip install 'promptlooper[training]'"
        ) from exc
    return engine.ModelHost(entry, data_dir, device)


def _receive(calls: Connection, inbox: queue.SimpleQueue[Any]) -> None:
    while True:
        try:
            message = calls.recv()
        except (EOFError, OSError):  # the server is gone
            message = None
        inbox.put(message)
        if message is None:
            return


class _Answers:
    """Answers not sent yet: held while more calls wait, sent as one message when the queue
    runs dry or, by a thread of their own, once the first has waited ``hold`` seconds (a call
    can take far longer than the hold: its predecessors' answers must not wait for it)."""

    def __init__(self, pipe: Connection, hold: float = HOLD_SECONDS) -> None:
        self._pipe = pipe
        self._hold = hold
        self._held: list[tuple[int, bool, Any]] = []
        self._due = 0.0
        self._changed = threading.Condition()
        threading.Thread(target=self._send_when_due, name="answers", daemon=True).start()

    def add(self, call_id: int, ok: bool, value: Any, *, more_waiting: bool) -> None:
        with self._changed:
            self._held.append((call_id, ok, value))
            if not more_waiting:
                self._send()
            elif len(self._held) == 1:
                self._due = time.monotonic() + self._hold
                self._changed.notify()

    def flush(self) -> None:
        with self._changed:
            self._send()

    def _send_when_due(self) -> None:
        with self._changed:
            while True:
                if not self._held:
                    self._changed.wait()
                elif (left := self._due - time.monotonic()) > 0:
                    self._changed.wait(left)
                else:
                    self._send()

    def _send(self) -> None:
        held, self._held = self._held, []
        if not held:
            return
        try:
            self._pipe.send(held)
        except Exception:  # one cannot be pickled: send them one by one, saying which
            for call_id, ok, value in held:
                try:
                    self._pipe.send([(call_id, ok, value)])
                except Exception as exc:
                    error = RuntimeError(f"{type(value).__name__}: {value} ({exc})")
                    self._pipe.send([(call_id, False, error)])


def serve(calls: Connection, answers: Connection) -> None:
    entry, data_dir, device = calls.recv()
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(calls, inbox), daemon=True).start()
    out = _Answers(answers)
    host = Host(entry, data_dir, device)
    while (message := inbox.get()) is not None:
        call_id, method, args = message
        try:
            result = host.call(method, args)
        except Exception as exc:
            out.add(call_id, False, exc, more_waiting=not inbox.empty())
        else:
            out.add(call_id, True, result, more_waiting=not inbox.empty())
    out.flush()  # asked to stop: the calls before that are answered first


def main() -> None:
    # Ctrl-C reaches the whole process group; when to stop is the server's to decide.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The tokenizers' thread pool wakes its threads for every batch, and they spin for more
    # work on the cores the step and the server need (on tiny-test, ~1,400 preemptions each
    # per 60 steps). A training batch is small enough to tokenize on one thread.
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    serve(
        Connection(int(sys.argv[1]), writable=False), Connection(int(sys.argv[2]), readable=False)
    )


if __name__ == "__main__":
    main()
