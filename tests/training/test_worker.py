"""The worker's answers: held while more calls wait, sent together, every one delivered."""

from __future__ import annotations

import threading
import time
from multiprocessing import Pipe
from pathlib import Path

from promptlooper.training.backend import worker
from promptlooper.training.registry import load_registry


def pipe() -> tuple:
    receiving, sending = Pipe(duplex=False)
    return receiving, sending


def test_answers_wait_while_more_calls_are_queued_then_go_together() -> None:
    receiving, sending = pipe()
    out = worker._Answers(sending, hold=60)
    out.add(1, True, "a", more_waiting=True)
    out.add(2, False, ValueError("b"), more_waiting=True)
    assert not receiving.poll(0.05)
    out.add(3, True, "c", more_waiting=False)  # the queue is empty: everything goes
    first, second, third = receiving.recv()
    assert (first, third) == ((1, True, "a"), (3, True, "c"))
    assert second[:2] == (2, False)
    assert str(second[2]) == "b"
    assert not receiving.poll(0.05)


def test_held_answers_go_when_the_first_has_waited_the_hold_even_mid_call() -> None:
    """The calls still queued may be long (a sample, a big step): the answers before them
    leave on time regardless, and the hold starts afresh with the next one held."""
    receiving, sending = pipe()
    out = worker._Answers(sending, hold=0.3)
    started = time.monotonic()
    out.add(1, True, "a", more_waiting=True)
    out.add(2, True, "b", more_waiting=True)
    assert not receiving.poll(0.15)
    assert [call_id for call_id, _ok, _value in receiving.recv()] == [1, 2]
    assert time.monotonic() - started < 2.0  # no further answer was needed to send them
    out.add(3, True, "c", more_waiting=True)
    assert not receiving.poll(0.15)
    assert receiving.recv() == [(3, True, "c")]


def test_an_answer_that_cannot_be_pickled_is_reported_and_the_others_still_go() -> None:
    receiving, sending = pipe()
    out = worker._Answers(sending, hold=60)
    out.add(1, True, "fine", more_waiting=True)
    out.add(2, True, threading.Lock(), more_waiting=True)  # locks cannot be pickled
    out.add(3, True, "also fine", more_waiting=False)
    answers = [receiving.recv() for _ in range(3)]
    assert answers[0] == [(1, True, "fine")]
    assert answers[2] == [(3, True, "also fine")]
    ((call_id, ok, error),) = answers[1]
    assert (call_id, ok) == (2, False)
    assert isinstance(error, RuntimeError)
    assert "lock" in str(error)


def test_a_stopping_worker_answers_every_call_it_took(tmp_path: Path) -> None:
    calls_in, calls_out = pipe()
    answers_in, answers_out = pipe()
    entry = load_registry().get("tiny-test")
    calls_out.send((entry, tmp_path, "cpu"))
    for call_id in range(5):  # no model is loaded for these: each answers False at once
        calls_out.send((call_id, "drop", ("some-run",)))
    calls_out.send(None)
    serving = threading.Thread(target=worker.serve, args=(calls_in, answers_out))
    serving.start()
    serving.join(timeout=30)
    assert not serving.is_alive()
    answered = []
    while answers_in.poll(0.1):
        answered += answers_in.recv()
    assert answered == [(call_id, True, False) for call_id in range(5)]
