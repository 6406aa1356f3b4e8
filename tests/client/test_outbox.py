"""The SDK's queue of training calls, without a server: what a batch looks like, and how every
way a batch can go wrong reaches the futures it carried."""

from __future__ import annotations

import json

import httpx
import pytest

from promptlooper.client import APIError, NotFoundError, ServerError, ValidationError
from promptlooper.client.outbox import MAX_CALLS, Outbox


def idle() -> object:
    return "sender"


def test_calls_go_in_order_a_batch_at_a_time() -> None:
    outbox = Outbox("run-1")
    futures = [outbox.add("forward", {"examples": [i]}, idle) for i in range(MAX_CALLS + 5)]
    assert outbox.sender() == "sender"
    first = outbox.take()
    assert first is not None
    assert first.path == "/api/training/runs/run-1/queue"
    calls = json.loads(first.content or b"")["calls"]
    assert [c["future_id"] for c in calls] == [f.future_id for f in futures[:MAX_CALLS]]
    assert calls[0] == {
        "operation": "forward",
        "body": {"examples": [0]},
        "future_id": calls[0]["future_id"],
    }
    outbox.settle(httpx.Response(202, json={"futures": [], "refused": None}))
    second = outbox.take()
    assert second is not None
    assert len(json.loads(second.content or b"")["calls"]) == 5
    outbox.settle(httpx.Response(202, json={"futures": [], "refused": None}))
    assert outbox.take() is None
    assert outbox.sender() is None  # all sent: a waiting call need not wait


@pytest.mark.parametrize(
    ("outcome", "error", "message"),
    [
        (httpx.ConnectError("connection refused"), APIError, "cannot send to the server"),
        (
            httpx.Response(404, json={"detail": "Training run not found"}),
            NotFoundError,
            "not found",
        ),
        (httpx.Response(502, text="<html>bad gateway</html>"), ServerError, "unexpected answer"),
        (httpx.Response(202, json={"surprise": True}), APIError, "unexpected answer"),
        (
            httpx.Response(202, json={"refused": {"index": 7, "status_code": 422, "detail": "x"}}),
            APIError,
            "unexpected answer",
        ),
    ],
)
def test_a_batch_that_was_not_taken_fails_every_call_in_it_and_after_it(
    outcome: object, error: type[APIError], message: str
) -> None:
    outbox = Outbox("run-1")
    sent = [outbox.add("forward", {}, idle) for _ in range(2)]
    assert outbox.take() is not None
    later = outbox.add("forward", {}, idle)  # queued while the batch was in flight
    outbox.settle(outcome)  # type: ignore[arg-type]
    assert outbox.take() is None  # nothing more is sent after a failure
    with pytest.raises(error, match=message):
        outbox.raise_failure(sent[0])
    for future in (sent[1], later):
        with pytest.raises(error, match="not sent"):
            outbox.raise_failure(future)
    outbox.raise_refusal()  # told already, by the futures: not raised again


def test_a_refusal_is_raised_by_the_next_call_and_only_once() -> None:
    outbox = Outbox("run-1")
    ok, bad = outbox.add("forward", {}, idle), outbox.add("optim_step", {}, idle)
    outbox.take()
    refused = {"index": 1, "status_code": 422, "detail": [{"loc": ["body", "learning_rate"]}]}
    outbox.settle(httpx.Response(202, json={"futures": [{}], "refused": refused}))
    outbox.raise_failure(ok)  # it was queued: nothing to raise
    with pytest.raises(ValidationError, match=r"queued optim_step refused: .*learning_rate"):
        outbox.add("forward", {}, idle)
    outbox.add("forward", {}, idle)  # raised once: queued this time
    with pytest.raises(ValidationError):
        outbox.raise_failure(bad)  # the future itself still says why


def test_a_call_is_not_queued_when_no_sender_can_start() -> None:
    outbox = Outbox("run-1")

    def closing() -> object:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    with pytest.raises(RuntimeError, match="interpreter shutdown"):
        outbox.add("forward", {"examples": ["lost"]}, closing)
    assert outbox.sender() is None
    kept = outbox.add("forward", {"examples": ["kept"]}, idle)
    batch = outbox.take()
    assert batch is not None
    assert [c["future_id"] for c in json.loads(batch.content or b"")["calls"]] == [kept.future_id]


def test_nan_is_refused_before_it_is_queued() -> None:
    outbox = Outbox("run-1")
    with pytest.raises(ValidationError, match=r"optim_step \(queued\): not JSON"):
        outbox.add("optim_step", {"learning_rate": float("nan")}, idle)
    assert outbox.sender() is None
