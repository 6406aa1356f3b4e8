"""The seed's error scenarios, and bad input that must leave the run as it was."""

from __future__ import annotations

import asyncio
import math
import uuid

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.training.registry import ModelRegistry, load_registry
from tests.factories import Actor
from tests.training.conftest import new_run, on_disk

GOOD = {"examples": [{"text": "The capital of France is Paris."}]}


async def test_models_are_listed(client: httpx.AsyncClient, alice: Actor) -> None:
    response = await client.get("/api/training/models", headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["count"] == 2
    models = {m["name"]: m for m in response.json()["data"]}
    assert set(models) == {"tiny-test", "smollm2-135m-instruct"}
    assert models["tiny-test"]["available"] is True
    assert models["tiny-test"]["source"] == "builtin"
    assert models["smollm2-135m-instruct"]["source"] == "gguf"
    assert models["smollm2-135m-instruct"]["max_seq_len"] == 2048


async def test_unsupported_model_is_400_with_the_supported_list(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    response = await client.post(
        "/api/training/runs", json={"base_model": "gpt-9"}, headers=alice.headers
    )
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "gpt-9" in detail
    assert "tiny-test" in detail
    assert "smollm2-135m-instruct" in detail


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/training/models"),
        ("GET", "/api/training/runs"),
        ("POST", "/api/training/runs"),
        ("POST", "/api/training/runs/{run}/forward_backward"),
        ("GET", "/api/training/runs/{run}/metrics"),
    ],
)
async def test_a_missing_or_invalid_api_key_is_401(
    client: httpx.AsyncClient, alice: Actor, method: str, path: str
) -> None:
    run = await new_run(client, alice)
    url = path.format(run=run)
    for headers in ({}, {"Authorization": "Bearer pl_not-a-real-key"}, {"X-Api-Key": "nope"}):
        response = await client.request(method, url, json=GOOD, headers=headers)
        assert response.status_code == 401, (headers, response.text)


async def test_another_users_run_is_403_everywhere(
    client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    run = await new_run(client, alice)
    base = f"/api/training/runs/{run}"
    calls = [
        ("GET", base, None),
        ("GET", f"{base}/metrics", None),
        ("GET", f"{base}/checkpoints", None),
        ("POST", f"{base}/forward_backward", GOOD),
        ("POST", f"{base}/forward", GOOD),
        ("POST", f"{base}/optim_step", {}),
        ("POST", f"{base}/sample", {"prompts": ["hi"]}),
        ("POST", f"{base}/save_state", {}),
        ("POST", f"{base}/load_state", {"checkpoint": "x"}),
        ("DELETE", base, None),
    ]
    for method, url, body in calls:
        response = await client.request(method, url, json=body, headers=bob.headers)
        assert response.status_code == 403, (method, url, response.text)
    assert (await client.get(base, headers=alice.headers)).status_code == 200


async def test_an_unknown_run_is_404(client: httpx.AsyncClient, alice: Actor) -> None:
    missing = uuid.uuid4()
    for method, suffix, body in [
        ("GET", "", None),
        ("POST", "/forward_backward", GOOD),
        ("POST", "/optim_step", {}),
        ("DELETE", "", None),
    ]:
        response = await client.request(
            method, f"/api/training/runs/{missing}{suffix}", json=body, headers=alice.headers
        )
        assert response.status_code == 404, (method, suffix)
        assert response.json()["detail"] == "Training run not found"


async def test_optim_step_without_gradients_is_400(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)
    response = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert response.status_code == 400
    assert "forward_backward" in response.json()["detail"]
    # After a step, the gradients are spent: a second step has nothing to apply.
    await client.post(
        f"/api/training/runs/{run}/forward_backward", json=GOOD, headers=alice.headers
    )
    first = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert first.status_code == 200
    again = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert again.status_code == 400


LONG = "word " * 400
NO_ASSISTANT = [{"role": "user", "content": "hello?"}]


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({"examples": []}, 422, "examples"),
        ({}, 422, "examples"),
        ({"examples": [{"text": LONG}]}, 400, "over the model's limit of 256"),
        ({"examples": [{"messages": NO_ASSISTANT}]}, 400, "assistant turn"),
        ({"examples": [{"messages": [{"role": "robot", "content": "x"}]}]}, 422, "role"),
        ({"examples": [{"text": "a b"}], "loss_fn": "hinge"}, 422, "loss_fn"),
        ({"examples": [{"text": "two words"}], "loss_fn": "ppo"}, 400, "logprobs"),
        ({"examples": [{"tokens": [1, 2, 3], "weights": [1, 1]}]}, 400, "weights has 2"),
        ({"examples": [{"tokens": [1, 99999]}]}, 400, "token ids"),
        ({"examples": [{"text": "a", "tokens": [1, 2]}]}, 422, "exactly one"),
        ({"examples": [{"text": "x"}]}, 400, "at least two tokens"),
        ({"examples": [{"tokens": [1, 2, 3], "weights": [0, 1e38, 1e38]}]}, 400, "not finite"),
        ({"examples": [{"text": "a b"}], "loss_fn_config": {"clip_lo": 0.5}}, 422, "clip_lo"),
        (
            {"examples": [{"text": "a b"}], "loss_fn_config": {"clip_low_threshold": 5}},
            422,
            "less than or equal to 1",
        ),
    ],
)
async def test_bad_batches_are_refused_and_change_nothing(
    client: httpx.AsyncClient, alice: Actor, body: dict, status: int, needle: str
) -> None:
    run = await new_run(client, alice)
    before = (
        await client.post(f"/api/training/runs/{run}/forward", json=GOOD, headers=alice.headers)
    ).json()
    # A good example next to the bad one must not slip its gradients in either.
    if body.get("examples"):
        body = {**body, "examples": [GOOD["examples"][0], *body["examples"]]}
    response = await client.post(
        f"/api/training/runs/{run}/forward_backward", json=body, headers=alice.headers
    )
    assert response.status_code == status, response.text
    assert needle in str(response.json()["detail"])
    step = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert step.status_code == 400  # no gradients were accumulated
    after = (
        await client.post(f"/api/training/runs/{run}/forward", json=GOOD, headers=alice.headers)
    ).json()
    assert after == before


async def test_malformed_json_is_422(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)
    response = await client.post(
        f"/api/training/runs/{run}/forward_backward",
        content=b'{"examples": [',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422


@pytest.mark.parametrize(
    ("op", "raw", "field"),
    [
        (
            "forward_backward",
            '{"examples": [{"tokens": [1, 2, 3], "weights": [0, NaN, 1]}]}',
            "weights",
        ),
        (
            "forward_backward",
            '{"examples": [{"tokens": [1, 2, 3], "logprobs": [0, 0, 0], "advantages": [0, 1,'
            ' Infinity]}], "loss_fn": "ppo"}',
            "advantages",
        ),
        ("optim_step", '{"learning_rate": Infinity}', "learning_rate"),
        ("optim_step", '{"beta1": NaN}', "beta1"),
        ("sample", '{"prompts": ["hi"], "temperature": NaN}', "temperature"),
    ],
)
async def test_nan_and_infinity_are_422_and_change_nothing(
    client: httpx.AsyncClient, alice: Actor, op: str, raw: str, field: str
) -> None:
    """JSON parsers here read NaN and Infinity; in a batch or an optimizer setting they would
    turn every weight of the adapter into NaN."""
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}"
    await client.post(f"{url}/forward_backward", json=GOOD, headers=alice.headers)
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = await client.post(f"{url}/{op}", content=raw.encode(), headers=headers)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert field in error["loc"]
    assert error["msg"] == "Input should be a finite number"
    step = await client.post(f"{url}/optim_step", headers=alice.headers)
    assert step.json()["tokens"] == 6  # GOOD's alone
    assert math.isfinite(step.json()["grad_norm"])


async def test_gradients_too_large_to_step_on_are_discarded(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    """Weights of 1e30 give a finite loss, but gradients whose norm (and Adam's second moment)
    overflows: the step is refused and they are dropped, so that the run can go on."""
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}"
    huge = {"examples": [{"tokens": [1, 2, 3], "weights": [0, 1e30, 1e30]}]}
    assert (
        await client.post(f"{url}/forward_backward", json=huge, headers=alice.headers)
    ).status_code == 200
    refused = await client.post(f"{url}/optim_step", headers=alice.headers)
    assert refused.status_code == 400
    assert "not finite" in refused.json()["detail"]
    again = await client.post(f"{url}/optim_step", headers=alice.headers)
    assert "No accumulated gradients" in again.json()["detail"]
    await client.post(f"{url}/forward_backward", json=GOOD, headers=alice.headers)
    step = await client.post(f"{url}/optim_step", headers=alice.headers)
    assert step.json()["step"] == 1
    metrics = (await client.get(f"{url}/metrics", headers=alice.headers)).json()
    assert [m["step"] for m in metrics["steps"]] == [1]


async def test_a_refused_batch_leaves_the_runs_randomness_as_it_was(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    """With dropout, each call draws from the run's own random stream; a call that was
    refused must not move it, or the run would train differently for having been sent one."""
    losses = []
    for refused_first in (False, True):
        run = await new_run(client, alice, seed=5, lora_dropout=0.5)
        url = f"/api/training/runs/{run}"
        # A first step: the adapter's output (which dropout masks) starts at zero.
        await client.post(f"{url}/forward_backward", json=GOOD, headers=alice.headers)
        await client.post(f"{url}/optim_step", json={"learning_rate": 1e-2}, headers=alice.headers)
        if refused_first:
            bad = {"examples": [{"messages": NO_ASSISTANT}]}
            response = await client.post(f"{url}/forward_backward", json=bad, headers=alice.headers)
            assert response.status_code == 400
        trained = await client.post(f"{url}/forward_backward", json=GOOD, headers=alice.headers)
        losses.append(trained.json()["loss"])
    assert losses[0] == losses[1]


@pytest.mark.parametrize(
    "body",
    [
        {"learning_rate": -1e-4},
        {"learning_rate": 11},
        {"beta1": 1.5},
        {"eps": 0},
        {"learning_rate": "fast"},
        {"momentum": 0.9},
    ],
)
async def test_bad_optimizer_params_are_422_and_keep_the_gradients(
    client: httpx.AsyncClient, alice: Actor, body: dict
) -> None:
    run = await new_run(client, alice)
    await client.post(
        f"/api/training/runs/{run}/forward_backward", json=GOOD, headers=alice.headers
    )
    response = await client.post(
        f"/api/training/runs/{run}/optim_step", json=body, headers=alice.headers
    )
    assert response.status_code == 422
    ok = await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    assert ok.json()["step"] == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"base_model": "tiny-test", "lora_rank": 0}, 422),
        ({"base_model": "tiny-test", "lora_dropout": 1.5}, 422),
        ({"base_model": "tiny-test", "lora_target_modules": []}, 422),
        ({"base_model": "tiny-test", "colour": "red"}, 422),
        ({}, 422),
    ],
)
async def test_bad_run_configs_are_refused(
    client: httpx.AsyncClient, alice: Actor, body: dict, status: int
) -> None:
    response = await client.post("/api/training/runs", json=body, headers=alice.headers)
    assert response.status_code == status
    listed = (await client.get("/api/training/runs", headers=alice.headers)).json()
    assert listed["count"] == 0


async def test_a_target_module_the_model_lacks_is_refused_at_creation(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    body = {"base_model": "tiny-test", "lora_target_modules": ["q_proj", "no_such_proj"]}
    response = await client.post("/api/training/runs", json=body, headers=alice.headers)
    models = (await client.get("/api/training/models", headers=alice.headers)).json()

    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.startswith("lora_target_modules: tiny-test has no layer 'no_such_proj'")
    assert "gate_proj" in detail  # what it may name instead
    listed = (await client.get("/api/training/runs", headers=alice.headers)).json()
    assert listed["count"] == 0
    (tiny,) = (m for m in models["data"] if m["name"] == "tiny-test")
    assert "q_proj" in tiny["lora_modules"]


async def test_a_registry_that_does_not_list_layers_leaves_them_to_the_first_call(
    client: httpx.AsyncClient, alice: Actor, trained_app: FastAPI
) -> None:
    registry = trained_app.state.trainer.registry
    entry = registry.get("tiny-test")
    unlisted = entry.model_copy(update={"lora": entry.lora.model_copy(update={"modules": None})})
    trained_app.state.trainer.registry = ModelRegistry({"tiny-test": unlisted})
    try:
        run = await new_run(client, alice, lora_target_modules=["no_such_proj"])
        response = await client.post(
            f"/api/training/runs/{run}/forward_backward", json=GOOD, headers=alice.headers
        )
    finally:
        trained_app.state.trainer.registry = registry
    assert response.status_code == 400
    assert "no_such_proj" in response.json()["detail"]
    # The half-made adapter is gone: the base model still serves other runs.
    good = await new_run(client, alice)
    trained = await client.post(
        f"/api/training/runs/{good}/forward_backward", json=GOOD, headers=alice.headers
    )
    assert trained.status_code == 200
    assert (
        await client.post(f"/api/training/runs/{good}/optim_step", headers=alice.headers)
    ).status_code == 200


def test_the_registrys_layers_are_the_tiny_models_own() -> None:
    """``lora.modules`` is data about an architecture: the tiny model, built from its config,
    has every layer listed, and no other linear layer a LoRA could adapt."""
    import torch

    from promptlooper.training.backend import tiny

    model = tiny.build_model(tiny.build_tokenizer(), 64)
    linear = {
        name.rsplit(".", 1)[-1]
        for name, module in model.model.named_modules()
        if isinstance(module, torch.nn.Linear)
    }
    assert linear == set(load_registry().get("tiny-test").lora.modules or [])


async def test_bad_sampling_and_checkpoint_requests(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}"
    cases = [
        ("sample", {"prompts": []}, 422),
        ("sample", {"prompts": [[]]}, 422),
        ("sample", {"prompts": ["hi"], "stop": [""]}, 422),
        ("sample", {"prompts": ["hi"], "temperature": -1}, 422),
        ("sample", {"prompts": ["hi"], "max_tokens": 0}, 422),
        ("sample", {"prompts": [LONG]}, 400),
        ("save_state", {"kind": "zip"}, 422),
        ("save_state", {"name": "../escape"}, 422),
        ("load_state", {"checkpoint": "never-saved"}, 404),
        ("load_state", {}, 422),
    ]
    for op, body, status in cases:
        response = await client.post(f"{url}/{op}", json=body, headers=alice.headers)
        assert response.status_code == status, (op, body, response.text)


async def test_delete_removes_the_run_and_its_files(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    await client.post(
        f"/api/training/runs/{run}/forward_backward", json=GOOD, headers=alice.headers
    )
    await client.post(f"/api/training/runs/{run}/optim_step", headers=alice.headers)
    saved = await client.post(f"/api/training/runs/{run}/save_state", headers=alice.headers)
    folder = saved.json()["path"]
    assert on_disk(folder)
    assert (
        await client.delete(f"/api/training/runs/{run}", headers=alice.headers)
    ).status_code == 204
    assert not on_disk(folder)
    assert (await client.get(f"/api/training/runs/{run}", headers=alice.headers)).status_code == 404


async def test_a_run_deleted_by_another_process_stops_answering(
    client: httpx.AsyncClient, alice: Actor, trained_app, sessionmaker, monkeypatch
) -> None:
    from promptlooper.training import trainer as trainer_module
    from promptlooper.training.models import TrainingRun

    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}/forward_backward"
    assert (await client.post(url, json=GOOD, headers=alice.headers)).status_code == 200
    async with sessionmaker() as session:  # as `promptlooper train` in another process would
        await session.delete(await session.get(TrainingRun, uuid.UUID(run)))
        await session.commit()
    trainer = trained_app.state.trainer
    target = trainer._targets[uuid.UUID(run)]

    monkeypatch.setattr(trainer_module, "TARGET_TTL", 0.0)  # the lookup is now stale
    gone = await client.post(url, json=GOOD, headers=alice.headers)
    again = await client.post(url, json=GOOD, headers=alice.headers)

    assert (gone.status_code, again.status_code) == (404, 404)
    assert gone.json()["detail"] == "Training run not found"
    forgotten = trainer.backend.forget(target.entry, target.spec.key)
    assert await asyncio.wrap_future(forgotten) is False  # already dropped by the 404
    kept = await new_run(client, alice)
    await client.post(
        f"/api/training/runs/{kept}/forward_backward", json=GOOD, headers=alice.headers
    )
    held = trainer._targets[uuid.UUID(kept)]
    assert await asyncio.wrap_future(trainer.backend.forget(held.entry, held.spec.key)) is True


async def test_saving_over_a_checkpoint_is_409_unless_asked_to_overwrite(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}"

    async def step() -> None:
        await client.post(f"{url}/forward_backward", json=GOOD, headers=alice.headers)
        await client.post(f"{url}/optim_step", headers=alice.headers)

    async def save(body: dict) -> httpx.Response:
        return await client.post(f"{url}/save_state", json=body, headers=alice.headers)

    await step()
    first = await save({"name": "keep"})
    again = await save({"name": "keep"})
    default = await save({})
    default_again = await save({})  # step-1 once more: the name is the worker's to choose
    queued = await client.post(
        f"{url}/queue",
        json={"calls": [{"operation": "save_state", "body": {"name": "keep"}}]},
        headers=alice.headers,
    )
    await step()
    replaced = await save({"name": "keep", "overwrite": True})
    listed = (await client.get(f"{url}/checkpoints", headers=alice.headers)).json()["data"]

    assert first.status_code == 201, first.text
    assert again.status_code == 409
    assert again.json()["detail"] == (
        "checkpoint 'keep' already exists; save with overwrite to replace it"
    )
    assert default.json()["name"] == "step-1"
    assert default_again.status_code == 409
    assert "'step-1' already exists" in default_again.json()["detail"]
    assert queued.json()["refused"]["status_code"] == 409
    assert queued.json()["futures"] == []
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["step"] == 2
    assert sorted((c["name"], c["step"]) for c in listed) == [("keep", 2), ("step-1", 1)]
