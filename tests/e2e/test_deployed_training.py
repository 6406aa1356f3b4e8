"""Training primitives through ``promptlooper serve`` on the shipped ``tiny-test`` model: the
server's worker process, real HTTP, a checkpoint on disk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.deployed import Deployed

EXAMPLES = [{"text": "billing: my card was charged twice"}, {"text": "bug: the app crashes"}]


def test_a_training_run_steps_samples_and_saves(serve: Callable[..., Deployed]):
    server = serve(TRAINING_DEVICE="cpu")
    admin = server.admin

    with server.client(timeout=120) as http:
        created = http.post(
            "/api/training/runs", json={"base_model": "tiny-test", "seed": 7}, headers=admin
        )
        run = f"/api/training/runs/{created.json()['id']}"
        losses = []
        for _ in range(3):
            step = http.post(f"{run}/forward_backward", json={"examples": EXAMPLES}, headers=admin)
            losses.append(step.json()["loss"])
            optim = http.post(f"{run}/optim_step", json={"learning_rate": 0.01}, headers=admin)
        sampled = http.post(
            f"{run}/sample",
            json={"prompts": ["billing:"], "max_tokens": 4, "temperature": 0},
            headers=admin,
        )
        saved = http.post(f"{run}/save_state", json={"name": "tuned"}, headers=admin)
        metrics = http.get(f"{run}/metrics", headers=admin)
        anonymous = http.post(f"{run}/optim_step", json={})

    assert created.status_code == 201, created.text
    assert optim.status_code == 200, optim.text
    assert optim.json()["step"] == 3
    assert losses[-1] < losses[0]  # the optimizer steps moved the weights the right way
    assert sampled.status_code == 200, sampled.text
    (sequence,) = sampled.json()["samples"][0]["sequences"]
    assert 1 <= len(sequence["tokens"]) <= 4
    assert saved.status_code == 201, saved.text
    assert Path(saved.json()["path"]).is_dir()
    assert [m["step"] for m in metrics.json()["steps"]] == [1, 2, 3]
    assert anonymous.status_code == 401
