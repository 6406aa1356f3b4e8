"""Browser-style events of online experiments sent from code, queued without waiting and
posted in the background in batches (``POST /api/experiments/batch``), the way training
calls are queued (``outbox.py``).

A service that tracks an event for every answer it gives should not wait a round trip each
time: ``track`` queues the event and returns, a sender (a thread of ``Client``'s, a task of
``AsyncClient``'s) posts what gathered while the previous batch was in flight, and
``flush()`` (or closing the client) waits until everything queued has been sent. Each event
gets an ``event_id`` unless it has one, so a batch retried after a lost answer is stored
once; a batch the server cannot take after ``ATTEMPTS`` tries is counted ``failed``, with the
reason, instead of blocking the events behind it.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from promptlooper.client.calls import Call, encode_json

MAX_EVENTS = 1000
"""Events per request: the batch endpoint's limit."""
ATTEMPTS = 3
PATH = "/api/experiments/batch"


@dataclass
class Delivery:
    """What became of the events queued so far: ``accepted`` and ``rejected`` by the
    server (``reasons`` counts why, e.g. ``unknown_variant``), and ``failed``: never taken,
    with the last ``error``."""

    queued: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    @property
    def pending(self) -> int:
        return self.queued - self.accepted - self.rejected - self.failed


class EventOutbox:
    """Events queued and not yet sent, and what became of those sent. Safe to use from the
    caller's thread and the sender's."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: deque[bytes] = deque()
        self._in_flight: list[bytes] = []
        self._attempt = 0
        self._busy = False
        self._sender: Any = None
        self._delivery = Delivery()

    def add(self, operation: str, body: dict[str, Any], start: Callable[[], Any]) -> None:
        """Queue one event (``operation`` names it in errors); ``start()`` starts a sender
        when none is running."""
        encoded = encode_json({"event_id": uuid.uuid4().hex} | body, operation)
        with self._lock:
            self._waiting.append(encoded)
            self._delivery.queued += 1
            if not self._busy:
                try:
                    self._sender = start()
                except BaseException:  # no sender (the loop or the interpreter is closing)
                    self._waiting.pop()
                    self._delivery.queued -= 1
                    raise
                self._busy = True

    def sender(self) -> Any:
        """The handle of the sender still sending, or None when everything has been sent."""
        with self._lock:
            return self._sender if self._busy else None

    def delivery(self) -> Delivery:
        with self._lock:
            found = self._delivery
            return Delivery(found.queued, found.accepted, found.rejected, found.failed,
                            Counter(found.reasons), found.error)  # fmt: skip

    def take(self) -> Call | None:
        """The next batch to send (the one in flight again after a failed attempt); None,
        and the sender's work done, when there is none."""
        with self._lock:
            if not self._in_flight:
                if not self._waiting:
                    self._busy = False
                    return None
                count = min(len(self._waiting), MAX_EVENTS)
                self._in_flight = [self._waiting.popleft() for _ in range(count)]
                self._attempt = 0
            self._attempt += 1
            content = b'{"events":[' + b",".join(self._in_flight) + b"]}"
        return Call("POST", PATH, content=content)

    def settle(self, outcome: httpx.Response | BaseException) -> None:
        """Count the batch in flight as the server judged it, or keep it for another attempt
        when the server could not be reached or failed (5xx, 429); a refusal of the whole
        request (another 4xx) is not retried."""
        with self._lock:
            sent = len(self._in_flight)
            delivery = self._delivery
            if isinstance(outcome, httpx.Response) and outcome.status_code == 202:
                body = outcome.json()
                delivery.accepted += int(body["accepted"])
                delivery.rejected += int(body["rejected"])
                delivery.reasons.update(r["reason"] for r in body["results"] if r["reason"])
                self._in_flight = []
                return
            if not isinstance(outcome, (httpx.Response, Exception)):  # the sender is stopping
                delivery.failed += sent + len(self._waiting)
                delivery.error = f"not sent: the sender stopped ({outcome!r})"
                self._in_flight = []
                self._waiting.clear()
                return
            if isinstance(outcome, Exception):
                error = f"cannot send to the server: {outcome!r}"
                retry = True
            else:
                error = f"server answered {outcome.status_code}: {outcome.text[:200]}"
                retry = outcome.status_code >= 500 or outcome.status_code == 429
            delivery.error = error
            if retry and self._attempt < ATTEMPTS:
                return
            delivery.failed += sent
            self._in_flight = []


@dataclass(frozen=True, slots=True)
class Flush:
    """Wait until the events queued in ``outbox`` have been sent; the client's runner answers
    with their ``Delivery``."""

    outbox: EventOutbox
