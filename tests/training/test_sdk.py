"""``TrainingClient`` in the SDK: typed results, futures and errors, async and blocking."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.client import (
    AsyncClient,
    AuthenticationError,
    BadRequestError,
    Client,
    ConflictError,
    NotFoundError,
    PermissionDeniedError,
    TrainingFuture,
    ValidationError,
)
from promptlooper.client.training import Checkpoint, LossOutput, OptimOutput, SampleOutput
from tests.factories import Actor

CHAT = [
    {"role": "user", "content": "Classify: my card was charged twice."},
    {"role": "assistant", "content": "billing"},
]


def sdk_for(app: FastAPI, actor: Actor) -> AsyncClient:
    transport = httpx.ASGITransport(app=app)
    return AsyncClient("http://testserver", api_key=actor.headers["X-Api-Key"], transport=transport)


@pytest.fixture
async def sdk(trained_app: FastAPI, alice: Actor) -> AsyncIterator[AsyncClient]:
    async with sdk_for(trained_app, alice) as client:
        yield client


async def test_async_training_client_runs_the_loop(sdk: AsyncClient) -> None:
    models = await sdk.training.models()
    assert "tiny-test" in [m.name for m in models]

    tc = await sdk.training.create("tiny-test", name="sdk", rank=4, seed=1)
    assert tc.info.lora["rank"] == 4
    fb = await tc.forward_backward([{"messages": CHAT}, "The capital of France is Paris."])
    assert isinstance(fb, LossOutput)
    assert len(fb.per_example_loss) == 2
    step = await tc.optim_step(learning_rate=1e-2)
    assert isinstance(step, OptimOutput)
    assert step.step == 1

    sampled = await tc.sample([CHAT[:1]], max_tokens=4, temperature=0)
    assert isinstance(sampled, SampleOutput)
    assert sampled.texts == [sampled.samples[0].sequences[0].text]
    assert sampled.elapsed_ms > 0

    adapter = await tc.save_state("first")
    with pytest.raises(ConflictError, match="'first' already exists"):
        await tc.save_state("first")
    adapter = await tc.save_state("first", overwrite=True)
    merged = await tc.save_state(kind="merged")
    assert isinstance(adapter, Checkpoint)
    assert (adapter.name, merged.name, merged.kind) == ("first", "merged-1", "merged")
    assert [c.name for c in await tc.checkpoints()] == ["first", "merged-1"]
    assert [m.step for m in await tc.metrics()] == [1]

    again = await sdk.training.run(tc.run_id)
    assert again.info.step == 1
    assert [r.id for r in await sdk.training.list()] == [tc.run_id]
    loaded = await again.load_state("first", with_optimizer=True)
    assert loaded.step == 1


async def test_pipelined_futures(sdk: AsyncClient) -> None:
    tc = await sdk.training.create("tiny-test")
    queued = [
        await tc.forward_backward(["The capital of France is Paris."], wait=False),
        await tc.optim_step(learning_rate=1e-2, wait=False),
        await tc.forward(["The capital of France is Paris."], wait=False),
    ]
    assert all(isinstance(f, TrainingFuture) for f in queued)
    before, step, after = [await tc.result(f) for f in queued]
    assert step.step == 1
    assert after.loss < before.loss

    failing = await tc.optim_step(wait=False)
    with pytest.raises(BadRequestError, match="forward_backward"):
        await tc.result(failing)


async def test_ppo_clipping_is_configurable_in_forward_and_forward_backward(
    sdk: AsyncClient,
) -> None:
    """Sampler logprobs of 0 (probability 1) put the ratio far below the clipping range, so
    with negative advantages each token's PPO loss is the lower threshold itself."""
    tc = await sdk.training.create("tiny-test")
    example = {"tokens": [5, 17, 42, 99], "logprobs": [0.0] * 4, "advantages": [-1.0] * 4}
    default = await tc.forward([example], "ppo")
    tighter = await tc.forward([example], "ppo", loss_fn_config={"clip_low_threshold": 0.5})
    trained = await tc.forward_backward(
        [example], "ppo", loss_fn_config={"clip_low_threshold": 0.5}
    )
    assert default.loss == pytest.approx(3 * 0.8)
    assert tighter.loss == trained.loss == pytest.approx(3 * 0.5)


async def test_nan_is_refused_before_it_is_sent(sdk: AsyncClient) -> None:
    """JSON cannot carry NaN or infinity: the SDK says so as the server would (422)."""
    tc = await sdk.training.create("tiny-test")
    await tc.forward_backward(["The capital of France is Paris."])
    with pytest.raises(ValidationError, match=r"optim_step: not JSON: Out of range float"):
        await tc.optim_step(learning_rate=float("nan"))
    assert (await tc.optim_step()).step == 1  # the gradients were kept for a good call


async def test_errors_map_to_exception_classes(
    sdk: AsyncClient, trained_app: FastAPI, bob: Actor
) -> None:
    with pytest.raises(BadRequestError, match="Supported models: tiny-test"):
        await sdk.training.create("gpt-9")
    tc = await sdk.training.create("tiny-test")
    with pytest.raises(BadRequestError):
        await tc.optim_step()
    with pytest.raises(ValidationError, match="examples"):
        await tc.forward_backward([])
    with pytest.raises(NotFoundError):
        await sdk.training.run("00000000-0000-0000-0000-000000000000")
    async with sdk_for(trained_app, bob) as other:
        with pytest.raises(PermissionDeniedError):
            await other.training.run(tc.run_id)
    transport = httpx.ASGITransport(app=trained_app)
    async with AsyncClient("http://testserver", api_key="wrong", transport=transport) as anon:
        with pytest.raises(AuthenticationError):
            await anon.training.models()


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_readme_loop_with_the_blocking_client(live_url: str, alice: Actor) -> None:
    data = [
        {"messages": [{"role": "user", "content": q}, {"role": "assistant", "content": a}]}
        for q, a in [("2+2?", "4"), ("Capital of France?", "Paris"), ("Sky colour?", "blue")]
    ]

    def fine_tune() -> tuple[list[float], str]:
        with Client(live_url, api_key=alice.headers["X-Api-Key"]) as client:
            tc = client.training.create("tiny-test")
            for _ in range(6):
                tc.forward_backward(data)
                tc.optim_step(learning_rate=2e-2)
            losses = [m.loss for m in tc.metrics()]
            tc.save_state("final")
            reply = tc.sample([data[1]["messages"][:1]], max_tokens=4, temperature=0)
            return losses, reply.texts[0]

    losses, reply = await asyncio.to_thread(fine_tune)
    assert len(losses) == 6
    assert losses[-1] < losses[0] * 0.5
    assert isinstance(reply, str)
