"""Sweeps started through ``promptlooper serve`` reach real HTTP providers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.deployed import Deployed, finished_experiment
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.openai_server import FakeOpenAI

ROWS = [
    {"input": "My card was charged twice", "expected": "billing"},
    {"input": "The app crashes on start", "expected": "bug"},
]


def sweep(providers: dict[str, Any], models: list[str]) -> dict[str, Any]:
    return {
        "name": "deployed",
        "parameter_space": {
            "model": models,
            "prompt": ["Classify: {{ input }} reply:billing"],
        },
        "dataset": {"rows": ROWS},
        "scorers": [{"name": "accuracy", "type": "exact_match"}],
        "providers": providers,
        "concurrency": 4,
    }


def test_the_server_runs_on_uvloop(serve: Callable[..., Deployed]):
    server = serve()

    assert "uvloop" in server.loaded_libraries()


def test_a_sweep_through_the_server_reaches_openai_and_anthropic(
    serve: Callable[..., Deployed],
    fake_openai: tuple[FakeOpenAI, str],
    fake_anthropic: tuple[FakeAnthropic, str],
):
    openai, openai_url = fake_openai
    anthropic, anthropic_url = fake_anthropic
    server = serve(OPENAI_API_KEY="sk-openai-e2e", ANTHROPIC_API_KEY="sk-ant-e2e")
    document = sweep(
        {"openai": {"base_url": openai_url}, "anthropic": {"base_url": anthropic_url}},
        ["openai:small", "anthropic:claude-test"],
    )

    with server.client() as http:
        project = http.post("/api/projects", json={"name": "e2e"}, headers=server.admin)
        created = http.post(
            f"/api/projects/{project.json()['id']}/experiments", json=document, headers=server.admin
        )
        assert created.status_code == 201, created.text
        experiment_id = created.json()["id"]
        started = http.post(f"/api/experiments/{experiment_id}/start", headers=server.admin)
        finished = finished_experiment(http, experiment_id, server.admin)
        board = http.get(f"/api/experiments/{experiment_id}/leaderboard", headers=server.admin)

    assert started.status_code == 202
    assert (finished["status"], finished["error"]) == ("completed", None)
    assert (openai.requests, anthropic.requests) == (2, 2)
    assert {h["Authorization"] for h in openai.headers} == {"Bearer sk-openai-e2e"}
    assert {h["x-api-key"] for h in anthropic.headers} == {"sk-ant-e2e"}
    assert sorted(e["score"] for e in board.json()["data"]) == [0.5, 0.5]
