"""Training calls queued without waiting (``wait=False``), sent in the background in batches.

A training loop that queues its calls needs none of their answers until later, so the SDK
hands out their futures at once and a sender (a thread of ``Client``'s, a task of
``AsyncClient``'s) posts them to ``POST /api/training/runs/{id}/queue``. While one batch is in
flight the next calls gather, so a loop that queues faster than the server answers costs a
request now and then instead of one per call: over a network that is a round trip saved per
call, and on the machine that trains, the client and the server no longer wake for every call
beside the training worker.

The server takes a batch's calls in order and stops at the first it refuses, so the run ends up
as if each call had been sent alone. The refusal is raised once, by the next primitive called on
the ``TrainingClient`` (where a loop that waited for each call would have stopped) or by
``result()`` of a future it concerns; the calls queued after the refused one are not sent.
"""

from __future__ import annotations

import threading
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from promptlooper.client.calls import Call, encode_json
from promptlooper.client.errors import APIError, detail_text, error_for

MAX_CALLS = 100
"""Calls per request; a longer queue goes in several."""
SEND_TIMEOUT = 600.0
"""Seconds to wait for the server to take a batch; it queues the calls without running them,
but a batch it did not answer for is reported lost though it may have been queued."""


@dataclass(frozen=True, slots=True)
class TrainingFuture:
    """A queued call; ``TrainingClient.result(future)`` waits for its typed result."""

    future_id: str
    operation: str


@dataclass(frozen=True, slots=True)
class _Queued:
    future: TrainingFuture
    encoded: bytes


@dataclass(frozen=True, slots=True)
class _Failure:
    """Why a queued call failed before it ran; raised afresh each time it is asked for."""

    status_code: int | None
    detail: str

    def error(self) -> APIError:
        if self.status_code is None:
            return APIError(None, self.detail)
        return error_for(self.status_code, self.detail)


class Outbox:
    """A run's calls queued and not yet sent, and what became of the ones the server refused.
    Safe to use from the caller's thread and the sender's."""

    def __init__(self, run_id: str) -> None:
        self.path = f"/api/training/runs/{run_id}/queue"
        self._lock = threading.Lock()
        self._waiting: deque[_Queued] = deque()
        self._in_flight: list[_Queued] = []
        self._busy = False
        self._sender: Any = None
        self._refusal: _Failure | None = None
        self._failed: dict[str, _Failure] = {}

    def add(self, operation: str, body: Any, start: Callable[[], Any]) -> TrainingFuture:
        """Queue a call and hand out its future; ``start()`` starts a sender when none is
        running and returns the runner's handle on it. A refusal not yet raised is raised
        here instead, and the call is not queued."""
        future = TrainingFuture(uuid.uuid4().hex, operation)
        entry = {"operation": operation, "body": body, "future_id": future.future_id}
        queued = _Queued(future, encode_json(entry, f"{operation} (queued)"))
        with self._lock:
            self._raise_refusal()
            self._waiting.append(queued)
            if not self._busy:
                try:
                    self._sender = start()
                except BaseException:  # no sender (the loop or the interpreter is closing)
                    self._waiting.pop()
                    raise
                self._busy = True
        return future

    def sender(self) -> Any:
        """The handle of the sender still sending, or None when everything has been sent."""
        with self._lock:
            return self._sender if self._busy else None

    def take(self) -> Call | None:
        """The next batch to send; None, and the sender's work done, when there is none."""
        with self._lock:
            if not self._waiting:
                self._busy = False
                return None
            count = min(len(self._waiting), MAX_CALLS)
            self._in_flight = [self._waiting.popleft() for _ in range(count)]
            content = b'{"calls":[' + b",".join(q.encoded for q in self._in_flight) + b"]}"
        return Call("POST", self.path, content=content, timeout=SEND_TIMEOUT)

    def settle(self, outcome: httpx.Response | BaseException) -> None:
        """Record what became of the batch in flight: the server's answer, or the error that
        kept it from answering."""
        with self._lock:
            batch, self._in_flight = self._in_flight, []
            queued, failure = _outcome(len(batch), outcome)
            if failure is None:
                return
            refused = batch[queued]
            unsent = [*batch[queued + 1 :], *self._waiting]
            self._waiting.clear()
            what = f"queued {refused.future.operation}"
            self._refusal = _Failure(failure.status_code, f"{what} refused: {failure.detail}")
            self._failed[refused.future.future_id] = self._refusal
            for q in unsent:
                self._failed[q.future.future_id] = _Failure(
                    failure.status_code,
                    f"not sent: the {what} before it was refused: {failure.detail}",
                )

    def raise_refusal(self) -> None:
        """Raise the refusal of a queued call, once."""
        with self._lock:
            self._raise_refusal()

    def raise_failure(self, future: TrainingFuture) -> None:
        """Raise why ``future``'s call never ran, if the server refused it or it was not sent;
        that tells of the refusal, which is then not raised again."""
        with self._lock:
            failure = self._failed.get(future.future_id)
            if failure is not None:
                self._refusal = None
                raise failure.error()

    def _raise_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            raise refusal.error()


def _outcome(sent: int, outcome: httpx.Response | BaseException) -> tuple[int, _Failure | None]:
    """How many calls of a batch of ``sent`` the server queued, and why it refused the next
    one (None when it queued them all)."""
    if isinstance(outcome, BaseException):
        return 0, _Failure(None, f"cannot send to the server: {outcome!r}")
    try:
        body = outcome.json()
        if outcome.status_code != 202:
            return 0, _Failure(outcome.status_code, detail_text(body["detail"]))
        refused = body["refused"]
        if refused is None:
            return sent, None
        index = int(refused["index"])
        if not 0 <= index < sent:
            raise ValueError(f"refused call {index} of {sent}")
        return index, _Failure(int(refused["status_code"]), detail_text(refused["detail"]))
    except (ValueError, KeyError, TypeError):
        return 0, _Failure(outcome.status_code, f"unexpected answer: {outcome.text[:200]}")


class Queue(Protocol):
    """What a client's background sender drives: calls queued by ``add``, sent batch by
    batch (``take``, then ``settle`` with the outcome). ``Outbox`` queues training calls,
    ``events.EventOutbox`` online-experiment events."""

    def add(self, operation: str, body: Any, start: Callable[[], Any]) -> Any: ...

    def sender(self) -> Any: ...

    def take(self) -> Call | None: ...

    def settle(self, outcome: httpx.Response | BaseException) -> None: ...


@dataclass(frozen=True, slots=True)
class Enqueue:
    """Queue a call without waiting: the client's runner answers with what the queue hands
    out (a training call's future)."""

    outbox: Queue
    operation: str
    body: Any
