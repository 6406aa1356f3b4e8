"""The backend's worker processes: one per base model, replaced when one dies."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from promptlooper.errors import Unavailable
from promptlooper.training.backend import TrainingBackend
from promptlooper.training.backend.host import RunSpec
from promptlooper.training.registry import load_registry
from promptlooper.training.schemas import LossRequest

SPEC = RunSpec(
    key="run-a", seed=3, rank=4, alpha=8.0, dropout=0.0, target_modules=("q_proj", "v_proj")
)
BATCH = LossRequest.model_validate({"examples": [{"text": "one two three four five"}]})


def test_a_worker_that_dies_fails_its_calls_and_is_replaced(tmp_path: Path) -> None:
    entry = load_registry().get("tiny-test")
    backend = TrainingBackend(tmp_path, "cpu")
    try:
        first = backend.submit(entry, "forward_backward", SPEC, BATCH).result(timeout=300)
        worker = backend._workers["tiny-test"].process
        assert worker.pid != os.getpid()  # the model runs outside the caller's process

        os.kill(worker.pid, signal.SIGSTOP)  # the next call cannot start before the kill
        in_flight = backend.submit(entry, "forward_backward", SPEC, BATCH)
        os.kill(worker.pid, signal.SIGKILL)
        with pytest.raises(Unavailable, match="training worker for tiny-test stopped"):
            in_flight.result(timeout=60)

        rebuilt = backend.submit(entry, "forward_backward", SPEC, BATCH).result(timeout=300)
        assert rebuilt.loss == first.loss  # a fresh adapter, initialised from the run's seed
        replacement = backend._workers["tiny-test"].process
        assert replacement.pid != worker.pid
    finally:
        backend.shutdown()
    assert replacement.poll() is not None  # shutdown stopped the worker


def test_a_script_without_a_main_guard_can_use_the_backend(tmp_path: Path) -> None:
    script = tmp_path / "train.py"  # no `if __name__ == "__main__"`, as in a notebook export
    script.write_text(
        "from pathlib import Path\n"
        "from promptlooper.training.backend import TrainingBackend\n"
        "from promptlooper.training.backend.host import RunSpec\n"
        "from promptlooper.training.registry import load_registry\n"
        "from promptlooper.training.schemas import LossRequest\n"
        f"backend = TrainingBackend(Path({str(tmp_path / 'data')!r}), 'cpu')\n"
        "spec = RunSpec(key='k', seed=0, rank=4, alpha=8.0, dropout=0.0,"
        " target_modules=('q_proj',))\n"
        "batch = LossRequest.model_validate({'examples': [{'text': 'one two three'}]})\n"
        "entry = load_registry().get('tiny-test')\n"
        "print('loss', backend.submit(entry, 'forward_backward', spec, batch).result().loss)\n"
        "backend.shutdown()\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("loss ") == 1  # the script ran once, not again in the worker


async def test_a_caller_that_stops_waiting_leaves_the_worker_answering(
    backend: TrainingBackend,
) -> None:
    """A sweep's timeout gives up on a local model's call; the call still runs, its answer is
    dropped, and the calls after it are answered (the worker is not left mute)."""
    entry = load_registry().get("tiny-test")
    given_up = backend.submit(entry, "forward_backward", SPEC, BATCH)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.wrap_future(given_up), 0.001)

    after = backend.submit(entry, "forward", SPEC, BATCH)
    answered = await asyncio.wait_for(asyncio.wrap_future(after), 120)

    assert answered.loss > 0
