"""A smoke test on the real SmolLM2-135M-Instruct: load (from its GGUF file, converted once),
two training steps on a chat example, and a greedy sample."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import Actor
from tests.training.conftest import new_run

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)

CHAT = [
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "The capital of France is Paris."},
]


async def test_smollm2_trains_and_samples(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice, base_model="smollm2-135m-instruct", lora_rank=4)
    url = f"/api/training/runs/{run}"
    losses = []
    for _ in range(2):
        fb = await client.post(
            f"{url}/forward_backward",
            json={"examples": [{"messages": CHAT}]},
            headers=alice.headers,
            timeout=120,
        )
        assert fb.status_code == 200, fb.text
        losses.append(fb.json()["mean_loss"])
        step = await client.post(
            f"{url}/optim_step", json={"learning_rate": 1e-3}, headers=alice.headers
        )
        assert step.status_code == 200, step.text
    assert losses[1] < losses[0]

    response = await client.post(
        f"{url}/sample",
        json={"prompts": [CHAT[:1]], "max_tokens": 12, "temperature": 0},
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    text = response.json()["samples"][0]["sequences"][0]["text"]
    assert "Paris" in text
