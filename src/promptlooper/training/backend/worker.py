"""A base model's worker process: ``python -m promptlooper.training.backend.worker CALLS ANSWERS``.

The server starts it (see ``host``) with two pipe descriptors. The first message names the
model; each later one is ``(call id, ModelHost method, args)``, answered on the other pipe with
``(call id, ok, result or exception)`` in the order the calls came; ``None``, or the server
going away, ends the process. Calls are read by a thread of their own so that a large request
never waits in the pipe, and with it the server's sender, while a step runs.
"""

from __future__ import annotations

import importlib
import os
import queue
import signal
import sys
import threading
import traceback
from multiprocessing.connection import Connection
from typing import Any

from promptlooper.errors import ConfigurationError

ENGINE_MODULE = "promptlooper.training.backend.engine"


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


def _answer(answers: Connection, call_id: int, ok: bool, value: Any) -> None:
    try:
        answers.send((call_id, ok, value))
    except Exception as exc:  # a result or an error that cannot be pickled: say what it was
        answers.send((call_id, False, RuntimeError(f"{type(value).__name__}: {value} ({exc})")))


def serve(calls: Connection, answers: Connection) -> None:
    entry, data_dir, device = calls.recv()
    inbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    threading.Thread(target=_receive, args=(calls, inbox), daemon=True).start()
    host = None
    while (message := inbox.get()) is not None:
        call_id, method, args = message
        try:
            if host is None and method == "drop":
                result: Any = False  # nothing loaded, nothing held
            else:
                if host is None:
                    host = _load(entry, data_dir, device)
                result = getattr(host, method)(*args)
        except Exception as exc:
            exc.add_note(f"in the training worker:\n{traceback.format_exc()}")
            _answer(answers, call_id, False, exc)
        else:
            _answer(answers, call_id, True, result)


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
