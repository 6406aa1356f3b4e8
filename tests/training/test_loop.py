"""The seed's success scenarios, through the real REST app on ``tiny-test``."""

from __future__ import annotations

import json
import math
from pathlib import Path

import httpx
import pytest
import torch
from fastapi import FastAPI
from transformers import AutoModelForCausalLM, AutoTokenizer

from tests.factories import Actor
from tests.training.conftest import new_run

TEXTS = [
    "The capital of France is Paris.",
    "Classify the support ticket: my card was charged twice. Answer: billing.",
    "Once upon a time there was a small model.",
    "Positive negative neutral yes no.",
]


def batch(*texts: str) -> dict[str, object]:
    return {"examples": [{"text": t} for t in texts]}


async def call(
    client: httpx.AsyncClient, actor: Actor, run: str, op: str, body: object = None
) -> dict:
    response = await client.post(f"/api/training/runs/{run}/{op}", json=body, headers=actor.headers)
    assert response.status_code in (200, 201), response.text
    return response.json()


async def test_complete_loop(client: httpx.AsyncClient, alice: Actor, trained_app: FastAPI) -> None:
    run = await new_run(client, alice, name="first")
    fb = await call(client, alice, run, "forward_backward", batch(*TEXTS[:2]))
    assert fb["tokens"] > 0
    assert len(fb["per_example_loss"]) == 2
    assert fb["loss"] == pytest.approx(sum(fb["per_example_loss"]))
    assert fb["mean_loss"] == pytest.approx(fb["loss"] / fb["tokens"])

    step = await call(client, alice, run, "optim_step", {"learning_rate": 1e-3})
    assert step["step"] == 1
    assert step["grad_norm"] > 0
    assert step["learning_rate"] == 1e-3
    assert step["loss"] == pytest.approx(fb["mean_loss"])

    sampled = await call(
        client, alice, run, "sample", {"prompts": ["The capital"], "max_tokens": 5}
    )
    sequence = sampled["samples"][0]["sequences"][0]
    assert 1 <= len(sequence["tokens"]) <= 5
    assert len(sequence["logprobs"]) == len(sequence["tokens"])

    saved = await call(client, alice, run, "save_state", {"kind": "adapter"})
    assert saved["name"] == "step-1"
    assert saved["step"] == 1
    assert (Path(saved["path"]) / "adapter_model.safetensors").is_file()

    got = (await client.get(f"/api/training/runs/{run}", headers=alice.headers)).json()
    assert got["step"] == 1
    assert got["lora"] == {
        "rank": 8,
        "alpha": 16.0,
        "dropout": 0.0,
        "target_modules": [
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        ],
    }
    metrics = (await client.get(f"/api/training/runs/{run}/metrics", headers=alice.headers)).json()
    assert [(m["step"], m["tokens"]) for m in metrics["steps"]] == [(1, fb["tokens"])]
    listed = await client.get(f"/api/training/runs/{run}/checkpoints", headers=alice.headers)
    assert [c["name"] for c in listed.json()["data"]] == ["step-1"]
    assert listed.json()["count"] == 1


async def test_gradient_accumulation_equals_one_big_batch(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    split, whole = await new_run(client, alice, seed=7), await new_run(client, alice, seed=7)
    first = await call(client, alice, split, "forward_backward", batch(*TEXTS[:2]))
    second = await call(client, alice, split, "forward_backward", batch(*TEXTS[2:]))
    together = await call(client, alice, whole, "forward_backward", batch(*TEXTS))
    assert first["loss"] + second["loss"] == pytest.approx(together["loss"], rel=1e-5)

    step_split = await call(client, alice, split, "optim_step", {"learning_rate": 1e-2})
    step_whole = await call(client, alice, whole, "optim_step", {"learning_rate": 1e-2})
    assert step_split["grad_norm"] == pytest.approx(step_whole["grad_norm"], rel=1e-5)
    assert step_split["tokens"] == step_whole["tokens"]

    after_split = await call(client, alice, split, "forward", batch(*TEXTS))
    after_whole = await call(client, alice, whole, "forward", batch(*TEXTS))
    assert after_split["loss"] == pytest.approx(after_whole["loss"], rel=1e-5)
    assert after_split["loss"] < together["loss"]


async def test_gradient_clipping_scales_only_gradients_over_the_limit(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    """Two steps on batches of different gradient norms: Adam is blind to a uniform scale, not
    to a different scale per step, so clipping both steps to one norm shows in the weights."""
    limits = {"none": None, "loose": 1e6, "tight": 1e-3}
    runs = {name: await new_run(client, alice, seed=3) for name in limits}
    norms: dict[str, list[float]] = {}
    for name, limit in limits.items():
        for texts in (TEXTS[:1], TEXTS[1:]):
            await call(client, alice, runs[name], "forward_backward", batch(*texts))
            body = {"learning_rate": 1e-2, "grad_clip_norm": limit}
            step = await call(client, alice, runs[name], "optim_step", body)
            norms.setdefault(name, []).append(step["grad_norm"])
    after = {
        name: (await call(client, alice, run, "forward", batch(*TEXTS)))["loss"]
        for name, run in runs.items()
    }
    # The norm reported is the one before clipping, and the first steps were the same.
    assert norms["none"][0] == norms["loose"][0] == norms["tight"][0] > 1e-3
    assert after["loose"] == after["none"]  # under the limit: the gradients are untouched
    assert after["tight"] != pytest.approx(after["none"], rel=1e-6)


TOKENS = [5, 17, 42, 99, 7, 250]


def weighted(weight: float) -> dict[str, object]:
    """One example of token ids, every target weighted ``weight``."""
    return {"examples": [{"tokens": TOKENS, "weights": [0.0] + [weight] * (len(TOKENS) - 1)}]}


async def test_grad_norm_is_the_norm_of_the_gradients(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    """The gradients are linear in the token weights: doubled weights, double the norm (the
    adapter's own weights, the same in both runs, would report one norm for both)."""
    norms = []
    for weight in (1.0, 2.0):
        run = await new_run(client, alice, seed=3)
        await call(client, alice, run, "forward_backward", weighted(weight))
        norms.append((await call(client, alice, run, "optim_step"))["grad_norm"])
    assert norms[0] > 0
    assert norms[1] == pytest.approx(2 * norms[0], rel=1e-5)


@pytest.mark.parametrize("limit", [None, 1e-3])
async def test_clipping_brings_the_gradients_to_the_limit(
    client: httpx.AsyncClient, alice: Actor, limit: float | None
) -> None:
    """Two steps, the second on weights 1 or 2. Clipped to a norm below both, the second
    step's gradients come out the same, so do the weights; unclipped, Adam tells them apart."""
    after = []
    for second in (1.0, 2.0):
        run = await new_run(client, alice, seed=3)
        for weight in (1.0, second):
            await call(client, alice, run, "forward_backward", weighted(weight))
            body = {"learning_rate": 1e-2, "grad_clip_norm": limit}
            step = await call(client, alice, run, "optim_step", body)
            assert step["grad_norm"] > 1e-3
        after.append((await call(client, alice, run, "forward", batch(*TEXTS)))["loss"])
    if limit is None:
        assert after[0] != pytest.approx(after[1], rel=1e-5)
    else:
        assert after[0] == pytest.approx(after[1], rel=1e-5)


async def test_multi_step_loss_decreases_and_metrics_record_it(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    before = await call(client, alice, run, "forward", batch(*TEXTS))
    for _ in range(8):
        await call(client, alice, run, "forward_backward", batch(*TEXTS))
        await call(client, alice, run, "optim_step", {"learning_rate": 2e-2})
    after = await call(client, alice, run, "forward", batch(*TEXTS))
    assert after["mean_loss"] < before["mean_loss"] * 0.7

    metrics = (await client.get(f"/api/training/runs/{run}/metrics", headers=alice.headers)).json()
    losses = [m["loss"] for m in metrics["steps"]]
    assert [m["step"] for m in metrics["steps"]] == list(range(1, 9))
    assert losses[-1] < losses[0]
    assert all(m["learning_rate"] == 2e-2 and m["grad_norm"] > 0 for m in metrics["steps"])


async def test_forward_does_not_train(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)
    first = await call(client, alice, run, "forward", batch(TEXTS[0]))
    again = await call(client, alice, run, "forward", batch(TEXTS[0]))
    assert first == again
    response = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert response.status_code == 400  # forward left no gradients behind


async def test_adapter_saved_and_loaded_into_another_run(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    trained = await new_run(client, alice)
    for _ in range(3):
        await call(client, alice, trained, "forward_backward", batch(*TEXTS))
        await call(client, alice, trained, "optim_step", {"learning_rate": 2e-2})
    await call(client, alice, trained, "save_state", {"name": "good"})
    expected = await call(client, alice, trained, "forward", batch(*TEXTS))

    fresh = await new_run(client, alice)
    untrained = await call(client, alice, fresh, "forward", batch(*TEXTS))
    loaded = await call(
        client, alice, fresh, "load_state", {"checkpoint": "good", "run_id": trained}
    )
    assert loaded == {"step": 3, "with_optimizer": False}
    reloaded = await call(client, alice, fresh, "forward", batch(*TEXTS))
    assert reloaded["loss"] == pytest.approx(expected["loss"], rel=1e-6)
    assert reloaded["loss"] != pytest.approx(untrained["loss"], rel=1e-3)


async def test_merged_model_loads_with_plain_transformers(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    for _ in range(3):
        await call(client, alice, run, "forward_backward", batch(*TEXTS))
        await call(client, alice, run, "optim_step", {"learning_rate": 2e-2})
    saved = await call(client, alice, run, "save_state", {"kind": "merged"})
    assert saved["kind"] == "merged"
    assert saved["name"] == "merged-3"
    expected = await call(client, alice, run, "forward", batch(TEXTS[0]))

    model = AutoModelForCausalLM.from_pretrained(saved["path"])
    tokenizer = AutoTokenizer.from_pretrained(saved["path"])
    ids = torch.tensor([tokenizer(TEXTS[0])["input_ids"]])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    loss = -logits.log_softmax(-1).gather(-1, ids[0, 1:, None]).sum().item()
    assert loss == pytest.approx(expected["loss"], rel=1e-4)

    response = await client.post(
        f"/api/training/runs/{run}/load_state",
        json={"checkpoint": "merged-3"},
        headers=alice.headers,
    )
    assert response.status_code == 400
    assert "adapter" in response.json()["detail"]


async def test_resume_with_optimizer_continues_bit_for_bit(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice, lora_dropout=0.1, seed=3)

    async def step() -> tuple[float, float]:
        fb = await call(client, alice, run, "forward_backward", batch(*TEXTS))
        opt = await call(client, alice, run, "optim_step", {"learning_rate": 1e-2})
        return fb["loss"], opt["grad_norm"]

    for _ in range(2):
        await step()
    await call(client, alice, run, "save_state", {"name": "mid"})
    original = [await step() for _ in range(2)]

    loaded = await call(
        client, alice, run, "load_state", {"checkpoint": "mid", "with_optimizer": True}
    )
    assert loaded["step"] == 2
    resumed = [await step() for _ in range(2)]
    assert resumed == original  # exact: same weights, moments, dropout stream

    metrics = (await client.get(f"/api/training/runs/{run}/metrics", headers=alice.headers)).json()
    assert [m["step"] for m in metrics["steps"]] == [1, 2, 3, 4]


async def test_runs_are_isolated(client: httpx.AsyncClient, alice: Actor) -> None:
    trained, bystander = await new_run(client, alice), await new_run(client, alice)
    before = await call(client, alice, bystander, "forward", batch(*TEXTS))
    await call(client, alice, bystander, "forward_backward", batch(TEXTS[0]))  # pending grads
    for _ in range(3):
        await call(client, alice, trained, "forward_backward", batch(*TEXTS))
        await call(client, alice, trained, "optim_step", {"learning_rate": 5e-2})
    assert await call(client, alice, bystander, "forward", batch(*TEXTS)) == before
    # The bystander's own pending gradients survived the other run's steps untouched.
    alone = await new_run(client, alice)
    await call(client, alice, alone, "forward_backward", batch(TEXTS[0]))
    step_bystander = await call(client, alice, bystander, "optim_step", {})
    step_alone = await call(client, alice, alone, "optim_step", {})
    assert step_bystander["grad_norm"] == pytest.approx(step_alone["grad_norm"], rel=1e-6)


async def test_users_see_only_their_own_runs(
    client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    mine = await new_run(client, alice)
    theirs = await new_run(client, bob)
    listed = (await client.get("/api/training/runs", headers=alice.headers)).json()
    assert [r["id"] for r in listed["data"]] == [mine]
    assert listed["count"] == 1
    assert theirs not in {r["id"] for r in listed["data"]}


async def test_chat_messages_train_on_assistant_tokens_only(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    chat = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": "Paris."},
    ]
    result = await call(client, alice, run, "forward_backward", {"examples": [{"messages": chat}]})
    whole = await call(
        client,
        alice,
        run,
        "forward",
        {
            "examples": [
                {
                    "text": "".join(
                        f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in chat
                    )
                }
            ]
        },
    )
    assert 0 < result["tokens"] < whole["tokens"] / 3
    step = await call(client, alice, run, "optim_step", {})
    assert step["tokens"] == result["tokens"]


async def test_custom_lora_config(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(
        client, alice, lora_rank=2, lora_alpha=4, lora_target_modules=["q_proj", "v_proj"]
    )
    await call(client, alice, run, "forward_backward", batch(TEXTS[0]))
    await call(client, alice, run, "optim_step", {})
    saved = await call(client, alice, run, "save_state", {})
    config = json.loads((Path(saved["path"]) / "adapter_config.json").read_text())
    assert config["r"] == 2
    assert config["lora_alpha"] == 4
    assert sorted(config["target_modules"]) == ["q_proj", "v_proj"]


async def test_sampling_parameters(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)

    async def sample(**params: object) -> list[dict]:
        body = {"prompts": ["The capital of France"], "max_tokens": 8, **params}
        return (await call(client, alice, run, "sample", body))["samples"][0]["sequences"]

    greedy = await sample(temperature=0)
    assert greedy == await sample(temperature=0)
    assert greedy == await sample(temperature=1.0, top_k=1)
    assert await sample(seed=5, num_samples=2) == await sample(seed=5, num_samples=2)
    several = await sample(num_samples=3, temperature=1.5, seed=1)
    assert len(several) == 3
    assert len({tuple(s["tokens"]) for s in several}) > 1
    for s in several:
        assert len(s["tokens"]) == len(s["logprobs"]) <= 8
        assert all(lp <= 0 for lp in s["logprobs"])
        assert s["stop_reason"] in {"stop", "length"}
    first_word = greedy[0]["text"].strip().split(" ")[0] if greedy[0]["text"].strip() else None
    if first_word:
        stopped = await sample(temperature=0, stop=[first_word])
        assert first_word not in stopped[0]["text"]
        assert stopped[0]["stop_reason"] == "stop"
    chat = [[{"role": "user", "content": "hi"}]]
    response = await call(client, alice, run, "sample", {"prompts": chat, "max_tokens": 3})
    assert response["samples"][0]["prompt_tokens"][0] == 1  # <|im_start|>


async def test_rl_losses_match_their_definitions(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)
    drawn = await call(
        client, alice, run, "sample", {"prompts": ["The capital"], "max_tokens": 6, "seed": 2}
    )
    prompt = drawn["samples"][0]["prompt_tokens"]
    seq = drawn["samples"][0]["sequences"][0]
    tokens = prompt + seq["tokens"]
    n, m = len(prompt), len(seq["tokens"])
    example = {
        "tokens": tokens,
        "weights": [0.0] * n + [1.0] * m,
        "logprobs": [0.0] * n + seq["logprobs"],
        "advantages": [0.0] * n + [2.0] * m,
    }
    # Sampled under the current weights, every ratio is 1: both losses are -sum(advantages).
    for loss_fn in ("importance_sampling", "ppo"):
        result = await call(
            client, alice, run, "forward", {"examples": [example], "loss_fn": loss_fn}
        )
        assert result["loss"] == pytest.approx(-2.0 * m, rel=1e-4)
        assert result["tokens"] == m
    ce = await call(
        client,
        alice,
        run,
        "forward",
        {"examples": [{"tokens": tokens, "weights": example["weights"]}]},
    )
    assert ce["loss"] == pytest.approx(-sum(seq["logprobs"]), rel=1e-4)
    assert not math.isnan(ce["loss"])
