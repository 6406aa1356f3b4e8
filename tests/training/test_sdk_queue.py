"""Calls queued with ``wait=False`` in the SDK: futures at once, sent in the background in
batches, in order with the calls that wait, and a refused call raised where a loop notices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.client import (
    AsyncClient,
    BadRequestError,
    Client,
    NotFoundError,
    TrainingFuture,
    ValidationError,
)
from tests.factories import Actor

TEXT = ["The capital of France is Paris."]


class Recording(httpx.ASGITransport):
    """The app's transport, noting each request's method and path."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app=app)
        self.requests: list[tuple[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append((request.method, request.url.path.rsplit("/", 1)[-1]))
        return await super().handle_async_request(request)


@pytest.fixture
def transport(trained_app: FastAPI) -> Recording:
    return Recording(trained_app)


@pytest.fixture
async def sdk(transport: Recording, alice: Actor) -> AsyncIterator[AsyncClient]:
    key = alice.headers["X-Api-Key"]
    async with AsyncClient("http://testserver", api_key=key, transport=transport) as client:
        yield client


async def test_a_queued_loop_goes_out_in_one_request(
    sdk: AsyncClient, transport: Recording
) -> None:
    tc = await sdk.training.create("tiny-test")
    futures = []
    for _ in range(5):
        futures.append(await tc.forward_backward(TEXT, wait=False))
        futures.append(await tc.optim_step(learning_rate=1e-2, wait=False))
    assert len({f.future_id for f in futures}) == 10  # handed out before anything was sent
    assert ("POST", "queue") not in transport.requests

    last = await tc.result(futures[-1])
    assert last.step == 5
    first, final = await tc.result(futures[0]), await tc.result(futures[-2])
    assert final.loss < first.loss
    posts = [path for method, path in transport.requests if method == "POST"]
    assert posts == ["runs", "queue"]  # the run, then all ten calls at once


async def test_a_waited_call_goes_after_the_queued_ones(sdk: AsyncClient) -> None:
    tc = await sdk.training.create("tiny-test")
    await tc.forward_backward(TEXT, wait=False)
    step = await tc.optim_step()  # needs the queued gradients: sent after them
    assert step.step == 1
    assert [m.step for m in await tc.metrics()] == [1]


async def test_a_refused_call_stops_the_queue_and_is_raised_once(sdk: AsyncClient) -> None:
    tc = await sdk.training.create("tiny-test")
    good_fb = await tc.forward_backward(TEXT, wait=False)
    good_step = await tc.optim_step(wait=False)
    refused = await tc.forward_backward([], wait=False)  # no examples: the server says 422
    after = await tc.optim_step(wait=False)
    assert (await tc.result(good_fb)).loss > 0
    assert (await tc.result(good_step)).step == 1

    with pytest.raises(ValidationError, match=r"queued forward_backward refused:.*examples"):
        await tc.result(refused)
    with pytest.raises(ValidationError, match="not sent: the queued forward_backward before"):
        await tc.result(after)
    assert [m.step for m in await tc.metrics()] == [1]  # the call after the refusal never ran
    # result() told of the refusal: the loop goes on without it being raised again.
    assert (await tc.forward_backward(TEXT)).loss > 0


async def test_the_next_primitive_raises_a_refusal_nobody_asked_about(
    sdk: AsyncClient,
) -> None:
    tc = await sdk.training.create("tiny-test")
    await tc.optim_step(learning_rate=-1, wait=False)
    await tc.checkpoints()  # waits until the queue is sent: the refusal is known by now
    with pytest.raises(ValidationError, match=r"queued optim_step refused:.*learning_rate"):
        await tc.forward_backward(TEXT, wait=False)
    future = await tc.forward_backward(TEXT, wait=False)  # raised once: this one goes
    assert (await tc.result(future)).loss > 0


async def test_a_call_that_fails_when_it_runs_fails_only_its_future(sdk: AsyncClient) -> None:
    tc = await sdk.training.create("tiny-test")
    failing = await tc.optim_step(wait=False)  # accepted: nothing to apply is found on running
    assert (await tc.forward_backward(TEXT)).loss > 0  # no refusal to raise
    with pytest.raises(BadRequestError, match="forward_backward"):
        await tc.result(failing)


async def test_nan_in_a_queued_call_is_refused_at_once(sdk: AsyncClient) -> None:
    tc = await sdk.training.create("tiny-test")
    with pytest.raises(ValidationError, match=r"optim_step \(queued\): not JSON"):
        await tc.optim_step(learning_rate=float("inf"), wait=False)
    assert (await tc.forward_backward(TEXT, wait=False)).operation == "forward_backward"


async def test_a_queue_the_server_cannot_take_fails_its_futures(
    trained_app: FastAPI, alice: Actor
) -> None:
    key = alice.headers["X-Api-Key"]
    transport = httpx.ASGITransport(app=trained_app)
    async with AsyncClient("http://testserver", api_key=key, transport=transport) as client:
        tc = await client.training.create("tiny-test")
        await client.training.delete(tc.run_id)
        gone = await tc.forward(TEXT, wait=False)
        with pytest.raises(NotFoundError, match="queued forward refused: Training run not"):
            await tc.result(gone)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_blocking_client_queues_in_a_thread_and_sends_before_closing(
    live_url: str, alice: Actor
) -> None:
    key = alice.headers["X-Api-Key"]

    def queue_and_leave() -> tuple[str, str]:
        with Client(live_url, api_key=key) as client:
            tc = client.training.create("tiny-test")
            for _ in range(3):
                tc.forward_backward(TEXT, wait=False)
                last = tc.optim_step(learning_rate=1e-2, wait=False)
        return tc.run_id, last.future_id  # closing the client sent them

    def outcome(run_id: str, future_id: str) -> tuple[int, list[int]]:
        with Client(live_url, api_key=key) as client:
            tc = client.training.run(run_id)
            step = tc.result(TrainingFuture(future_id, "optim_step")).step
            return step, [m.step for m in tc.metrics()]

    run_id, future_id = await asyncio.to_thread(queue_and_leave)
    assert await asyncio.to_thread(outcome, run_id, future_id) == (3, [1, 2, 3])
