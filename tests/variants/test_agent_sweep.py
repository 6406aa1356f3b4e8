"""Sweeping around an agent's config: its values fill the grid, its budget fields are enforced."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI

from promptlooper.variants.config import as_sweep, base_config
from tests.sweeps.conftest import (  # noqa: F401 (fixtures)
    fake_openai,
    run_to_end,
    settings,  # the agent's provider is a fake on 127.0.0.1
)
from tests.variants.test_agents_api import url

SHORT = "Card charged twice"
LONG = " ".join(["refund"] * 40)


@pytest.fixture
async def served_agent(client: httpx.AsyncClient, owner, project_id) -> dict:
    response = await client.post(
        f"/api/projects/{project_id}/agents",
        json={
            "name": "Triage",
            "model_provider": "openai",
            "model_name": "small",
            "user_prompt_template": "Classify: {{ input }}",
            "max_tokens": 7,
            "timeout_seconds": 5,
            "max_retries": 1,
            "input_token_limit": 20,
        },
        headers=owner.headers,
    )
    assert response.status_code == 201, response.text
    return response.json()


def _sweep(base_url: str, **extra) -> dict:
    return {
        "parameter_space": {"temperature": [0.0, 0.5]},
        "dataset": {"rows": [{"input": SHORT}, {"input": LONG}]},
        "providers": {"openai": {"base_url": base_url}},
        **extra,
    }


def test_as_sweep_fills_what_the_document_does_not_sweep():
    config = base_config(
        {"model_provider": "mock", "model_name": "m", "user_prompt_template": "{{ input }}"}
    ) | {"temperature": 0.3, "token_budget": 50}

    document = as_sweep(config, {"parameter_space": {"temperature": [0.0, 1.0]}})

    assert document["parameter_space"] == {
        "model": ["mock:m"],
        "prompt": ["{{ input }}"],
        "temperature": [0.0, 1.0],
        "token_budget": [50],
    }
    pipeline = as_sweep(config, {"pipeline": [{"params": {"token_budget": 9}}, {}]})["pipeline"]
    assert [stage["params"] for stage in pipeline] == [{"token_budget": 9}, {"token_budget": 50}]


async def test_an_agent_sweep_runs_the_agent_config_with_its_budget_fields(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner,
    served_agent,
    fake_openai,  # noqa: F811
):
    server, base_url = fake_openai
    created = await client.post(
        url(served_agent, "experiments"), json=_sweep(base_url), headers=owner.headers
    )
    assert created.status_code == 201, created.text
    experiment = created.json()
    assert experiment["name"] == "Triage sweep"
    assert experiment["total_runs"] == 4

    await run_to_end(client, app, owner, experiment["id"])

    runs = (
        await client.get(f"/api/experiments/{experiment['id']}/runs", headers=owner.headers)
    ).json()["data"]
    failed = [r for r in runs if r["status"] == "failed"]
    assert len(failed) == 2
    assert all(r["error"].startswith("input_token_limit: the prompt has") for r in failed)
    assert sorted(body["temperature"] for body in server.bodies) == [0.0, 0.5]
    for body in server.bodies:
        assert body["model"] == "small"
        assert body["max_tokens"] == 7
        assert not {"timeout_seconds", "max_retries", "input_token_limit"} & set(body)
        assert body["messages"][-1]["content"] == f"Classify: {SHORT}"


async def test_an_agent_sweep_can_start_from_a_given_variant(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner,
    served_agent,
    fake_openai,  # noqa: F811
):
    server, base_url = fake_openai
    variant = (
        await client.post(
            url(served_agent, "variants"),
            json={"name": "Large", "model_name": "large", "input_token_limit": 1000},
            headers=owner.headers,
        )
    ).json()

    created = await client.post(
        url(served_agent, "experiments"),
        json=_sweep(base_url, variant_id=variant["id"], name="from large"),
        headers=owner.headers,
    )
    assert created.status_code == 201, created.text
    await run_to_end(client, app, owner, created.json()["id"])

    assert len(server.bodies) == 4
    assert {body["model"] for body in server.bodies} == {"large"}


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"variant_id": str(uuid.uuid4())}, 404, "Variant not found"),
        ({"dataset": {"path": "rows.csv"}}, 422, "dataset.path: files are read by the CLI"),
        ({"parameter_space": {"max_retries": [-1]}}, 422, "max_retries: must be at least 0"),
        ({"concurrency": 0}, 422, "concurrency"),
        (
            {"parameter_space": {"temprature": [0.1, 0.9]}},
            422,
            "parameter_space.temprature: not a parameter; did you mean 'temperature'?",
        ),
        (
            {"parameter_space": {"max_token": [8]}},
            422,
            "parameter_space.max_token: not a parameter; did you mean 'max_tokens'?",
        ),
        (
            {"parameter_space": {"system_prompt": ["Be brief."]}},
            422,
            "parameter_space.system_prompt: a sweep calls this field 'system'",
        ),
    ],
)
async def test_bad_agent_sweeps_are_refused(
    client: httpx.AsyncClient, owner, served_agent, body, status, message
):
    document = {"dataset": {"rows": [{"input": SHORT}]}, **body}

    response = await client.post(
        url(served_agent, "experiments"), json=document, headers=owner.headers
    )

    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


async def test_parameters_the_model_takes_beyond_the_agent_fields_are_kept(
    client: httpx.AsyncClient, owner, served_agent
):
    document = {
        "dataset": {"rows": [{"input": SHORT}]},
        "parameter_space": {"top_p": [0.5, 1.0], "seed": [7]},
    }

    response = await client.post(
        url(served_agent, "experiments"), json=document, headers=owner.headers
    )

    assert response.status_code == 201, response.text
