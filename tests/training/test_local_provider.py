"""The sweeps' ``local`` provider: a registry model and a run's checkpoints as sweep models."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from fastapi import FastAPI

from promptlooper.sweeps.engine.executor import Providers
from promptlooper.sweeps.providers import provider_configs
from promptlooper.sweeps.spec import SweepSpec
from promptlooper.training.backend import TrainingBackend
from tests.factories import Actor
from tests.training.conftest import new_run

ROWS = [{"input": "my card was charged twice"}, {"input": "the app crashes"}]


async def trained_run(client: httpx.AsyncClient, actor: Actor) -> str:
    run = await new_run(client, actor)
    url = f"/api/training/runs/{run}"
    chat = [
        {"role": "user", "content": "Classify: my card was charged twice"},
        {"role": "assistant", "content": "billing"},
    ]
    for _ in range(12):
        await client.post(
            f"{url}/forward_backward",
            json={"examples": [{"messages": chat}]},
            headers=actor.headers,
        )
        await client.post(f"{url}/optim_step", json={"learning_rate": 2e-2}, headers=actor.headers)
    for body in ({"name": "tuned"}, {"kind": "merged", "name": "whole"}):
        saved = await client.post(f"{url}/save_state", json=body, headers=actor.headers)
        assert saved.status_code == 201, saved.text
    return run


def sweep(models: list[str]) -> dict:
    return {
        "name": "base-vs-tuned",
        "parameter_space": {
            "model": models,
            "prompt": ["Classify: {{ input }}"],
            "max_tokens": [6],
        },
        "dataset": {"rows": ROWS},
        "scorers": [{"name": "short", "type": "length", "max": 40}],
        "concurrency": 4,
    }


async def project(client: httpx.AsyncClient, actor: Actor) -> str:
    response = await client.post(
        "/api/projects", json={"name": f"p-{uuid.uuid4().hex[:6]}"}, headers=actor.headers
    )
    return response.json()["id"]


async def test_a_sweep_compares_a_base_model_with_its_fine_tunes(
    client: httpx.AsyncClient, alice: Actor, trained_app: FastAPI
) -> None:
    run = await trained_run(client, alice)
    models = ["local:tiny-test", f"local:{run}@tuned", f"local:{run}@whole"]
    created = await client.post(
        f"/api/projects/{await project(client, alice)}/experiments",
        json=sweep(models),
        headers=alice.headers,
    )
    assert created.status_code == 201, created.text
    eid = created.json()["id"]
    started = asyncio.get_running_loop().time()
    await client.post(f"/api/experiments/{eid}/start", headers=alice.headers)
    await asyncio.wait_for(trained_app.state.sweep_jobs.wait(uuid.UUID(eid)), 60)
    swept_ms = (asyncio.get_running_loop().time() - started) * 1000
    final = (await client.get(f"/api/experiments/{eid}", headers=alice.headers)).json()
    assert final["progress"]["completed"] == 6, final

    texts: dict[str, list[str]] = {}
    latencies = []
    runs = await client.get(f"/api/experiments/{eid}/runs?limit=10", headers=alice.headers)
    for row in runs.json()["data"]:
        detail = await client.get(f"/api/experiments/{eid}/runs/{row['id']}", headers=alice.headers)
        body = detail.json()
        (stage,) = body["stages"]
        assert stage["tokens_out"] <= 6
        latencies.append(stage["latency_ms"])
        texts.setdefault(body["config"]["model"], []).append(stage["response_raw"])
    # The adapter on its base and the merged model are the same weights: the same answers.
    assert sorted(texts[f"local:{run}@tuned"]) == sorted(texts[f"local:{run}@whole"])
    assert sorted(texts["local:tiny-test"]) != sorted(texts[f"local:{run}@tuned"])
    assert "billing" in texts[f"local:{run}@tuned"]  # what it was taught for that prompt
    # A latency is the model's time: four calls at once (the sweep's concurrency), the first
    # of them waiting for the model to load, would otherwise add up to far more than the sweep.
    assert min(latencies) > 0
    assert sum(latencies) < swept_ms


async def test_another_users_checkpoint_cannot_be_swept(
    client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    run = await trained_run(client, alice)
    response = await client.post(
        f"/api/projects/{await project(client, bob)}/experiments",
        json=sweep([f"local:{run}@tuned"]),
        headers=bob.headers,
    )
    assert response.status_code == 403
    missing = await client.post(
        f"/api/projects/{await project(client, bob)}/experiments",
        json=sweep(["local:not-a-run@x"]),
        headers=bob.headers,
    )
    assert missing.status_code == 422
    assert "<run id>@<checkpoint>" in str(missing.json()["detail"])


async def test_an_unknown_local_model_or_checkpoint_is_refused_at_creation(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)  # nothing saved yet
    url = f"/api/projects/{await project(client, alice)}/experiments"
    judge_scorer = {"name": "j", "type": "llm_judge", "model": f"local:{run}@final", "rubric": "?"}
    judged = sweep(["mock:small"]) | {"scorers": [judge_scorer]}

    unknown = await client.post(url, json=sweep(["local:tiny-tset"]), headers=alice.headers)
    unsaved = await client.post(url, json=sweep([f"local:{run}@final"]), headers=alice.headers)
    no_run = await client.post(
        url, json=sweep([f"local:{uuid.uuid4()}@final"]), headers=alice.headers
    )
    judge = await client.post(url, json=judged, headers=alice.headers)

    assert unknown.status_code == 422
    assert unknown.json()["detail"].startswith("parameter_space.model: 'local:tiny-tset' is not")
    assert "tiny-test" in unknown.json()["detail"]  # what the registry has
    assert unsaved.status_code == 422
    assert unsaved.json()["detail"].startswith("parameter_space.model:")
    assert "no checkpoint 'final'" in unsaved.json()["detail"]
    assert no_run.status_code == 422
    assert no_run.json()["detail"].startswith("parameter_space.model:")
    assert judge.status_code == 422
    assert judge.json()["detail"].startswith("scorers[0].model:")
    listed = await client.get(url, headers=alice.headers)
    assert listed.json()["count"] == 0


async def test_local_calls_queued_behind_the_model_load_keep_a_short_timeout(tmp_path) -> None:
    """A fresh worker starts, imports PyTorch and builds the model before the first answer,
    and a sweep's calls queue behind it and each other; the timeout counts each call's own
    generation, so none of them runs into it."""
    local = {"timeout": 3, "max_retries": 0, "data_dir": str(tmp_path), "device": "cpu"}
    spec = SweepSpec.model_validate(sweep(["local:tiny-test"]) | {"providers": {"local": local}})
    providers = Providers(provider_configs(spec))
    try:
        calls = [
            providers.complete("local:tiny-test", f"Classify: {i}", {"max_tokens": 4}, None)
            for i in range(12)
        ]
        answers = await asyncio.gather(*calls)
    finally:
        await providers.aclose()
        TrainingBackend.shared(tmp_path, "cpu").shutdown()
    assert len(answers) == 12
    assert all(a.tokens_out > 0 for a in answers)
    assert providers.retries == 0
