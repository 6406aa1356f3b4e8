"""``POST /runs/{id}/queue``: several primitives in one request, each treated as if sent alone
with ``?wait=false``, and the first refused one ending the batch."""

from __future__ import annotations

import uuid

import httpx

from tests.factories import Actor
from tests.training.conftest import new_run
from tests.training.test_futures import GOOD, result_of


def call(operation: str, body: object = None, future_id: str | None = None) -> dict:
    entry: dict = {"operation": operation}
    if body is not None:
        entry["body"] = body
    if future_id is not None:
        entry["future_id"] = future_id
    return entry


STEP = [call("forward_backward", GOOD), call("optim_step", {"learning_rate": 1e-2})]


async def queue(
    client: httpx.AsyncClient, actor: Actor, run: str, calls: list, **kwargs: object
) -> httpx.Response:
    return await client.post(
        f"/api/training/runs/{run}/queue", json={"calls": calls}, headers=actor.headers, **kwargs
    )


async def test_a_queued_batch_runs_in_order_like_separate_calls(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    mine = uuid.uuid4().hex
    calls = [*STEP, call("forward_backward", GOOD), call("optim_step", future_id=mine)]
    response = await queue(client, alice, run, calls)
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["refused"] is None
    assert [f["operation"] for f in body["futures"]] == [c["operation"] for c in calls]
    assert {f["status"] for f in body["futures"]} == {"pending"}
    assert body["futures"][3]["future_id"] == mine  # the caller's id, as asked
    outcomes = [(await result_of(client, alice, f["future_id"])).json() for f in body["futures"]]
    first, step, second, last = (o["result"] for o in outcomes)
    assert (step["step"], last["step"]) == (1, 2)
    assert second["loss"] < first["loss"]

    # The same calls sent one by one on a fresh run give the same numbers.
    other = await new_run(client, alice)
    alone = []
    for c in calls:
        url = f"/api/training/runs/{other}/{c['operation']}"
        response = await client.post(url, json=c.get("body", {}), headers=alice.headers)
        alone.append(response.json())
    assert alone == [o["result"] for o in outcomes]


async def test_the_first_refused_call_ends_the_batch(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    calls = [*STEP, call("forward_backward", {"examples": []}), *STEP]
    response = await queue(client, alice, run, calls)
    assert response.status_code == 202
    body = response.json()
    assert [f["operation"] for f in body["futures"]] == ["forward_backward", "optim_step"]
    refused = body["refused"]
    assert (refused["index"], refused["status_code"]) == (2, 422)
    assert refused["detail"][0]["loc"] == ["body", "examples"]  # as its own route says it
    for future in body["futures"]:
        assert (await result_of(client, alice, future["future_id"])).status_code == 200
    metrics = await client.get(f"/api/training/runs/{run}/metrics", headers=alice.headers)
    assert [m["step"] for m in metrics.json()["steps"]] == [1]  # nothing after the refusal ran
    nothing = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert nothing.status_code == 400  # no gradients were left accumulated either


async def test_each_kind_of_refusal_says_what_the_call_alone_would_have(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    taken = uuid.uuid4().hex
    await queue(client, alice, run, [call("forward", GOOD, future_id=taken)])
    cases = [
        (call("backward", GOOD), 422, ["operation"]),
        (call("forward", GOOD, future_id="short"), 422, ["future_id"]),
        ({"operation": "forward", "body": GOOD, "extra": 1}, 422, ["extra"]),
        (call("optim_step", {"learning_rate": -1}), 422, ["body", "learning_rate"]),
        (call("load_state", {"checkpoint": "bad\u0000name"}), 422, ["body", "checkpoint"]),
        (call("load_state", {"checkpoint": "never-saved"}), 404, None),
        (call("forward", GOOD, future_id=taken), 409, None),
    ]
    for entry, status, loc in cases:
        response = await queue(client, alice, run, [call("forward", GOOD), entry])
        assert response.status_code == 202, response.text
        body = response.json()
        assert len(body["futures"]) == 1, entry
        refused = body["refused"]
        assert (refused["index"], refused["status_code"]) == (1, status), (entry, refused)
        if loc is None:
            assert isinstance(refused["detail"], str), refused
            assert refused["detail"], refused
        else:
            assert refused["detail"][0]["loc"] == loc, refused


async def test_nan_in_a_queued_call_is_refused(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)
    content = '{"calls": [{"operation": "optim_step", "body": {"learning_rate": NaN}}]}'
    response = await client.post(
        f"/api/training/runs/{run}/queue",
        content=content,
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 202
    assert response.json()["refused"]["status_code"] == 422
    assert response.json()["futures"] == []


async def test_a_bad_request_as_a_whole_queues_nothing(
    client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}/queue"
    assert (await queue(client, bob, run, STEP)).status_code == 403
    assert (await queue(client, alice, str(uuid.uuid4()), STEP)).status_code == 404
    assert (await client.post(url, json={"calls": STEP})).status_code == 401
    assert (await queue(client, alice, run, [])).status_code == 422
    assert (await queue(client, alice, run, [call("forward", GOOD)] * 1001)).status_code == 422
    assert (
        await client.post(url, json={"calls": STEP, "x": 1}, headers=alice.headers)
    ).status_code == 422
    broken = await client.post(
        url, content=b'{"calls": [', headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert broken.status_code == 422
    steps = await client.get(f"/api/training/runs/{run}/metrics", headers=alice.headers)
    assert steps.json()["steps"] == []
    nothing = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert nothing.status_code == 400


async def test_future_ids_are_per_user(client: httpx.AsyncClient, alice: Actor, bob: Actor) -> None:
    chosen = uuid.uuid4().hex
    alices, bobs = await new_run(client, alice), await new_run(client, bob)

    first = await queue(client, alice, alices, [call("forward", GOOD, future_id=chosen)])
    second = await queue(client, bob, bobs, [call("optim_step", future_id=chosen)])
    alices_outcome = await result_of(client, alice, chosen)
    bobs_outcome = await result_of(client, bob, chosen)

    assert first.json()["refused"] is None
    assert second.json()["refused"] is None  # not "already in use": that id is alice's
    assert alices_outcome.json()["operation"] == "forward"
    assert alices_outcome.status_code == 200
    assert bobs_outcome.status_code == 400  # his own call's answer: nothing to apply
    assert "forward_backward" in bobs_outcome.json()["detail"]
