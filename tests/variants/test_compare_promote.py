"""Comparing variants field by field, and promoting a sweep's best config to a variant."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI

from tests.sweeps.conftest import ROWS, create, document, finished, run_to_end
from tests.variants.conftest import TWO_MODELS, make_variant


async def test_compare_fields_sources_prompt_diffs_and_metrics(
    client: httpx.AsyncClient, owner, agent
):
    prompt = "You extract facts.\nBe terse."
    terse = await make_variant(
        client, owner, agent, name="Terse", system_prompt=prompt, temperature=0.0
    )
    plain = await make_variant(client, owner, agent, name="Plain")
    await client.post(
        f"/api/agents/{agent['id']}/performance",
        json=[{"variant_id": terse["id"], "success": True, "quality": 0.9}] * 3,
        headers=owner.headers,
    )

    result = (
        await client.get(
            f"/api/agents/{agent['id']}/compare",
            params={"variants": f"terse,{plain['id']}"},
            headers=owner.headers,
        )
    ).json()
    missing = await client.get(
        f"/api/agents/{agent['id']}/compare?variants=nope", headers=owner.headers
    )

    assert [i["name"] for i in result["items"]] == ["agent", "terse", "plain"]
    assert result["items"][1]["metrics"]["n"] == 3
    assert result["items"][0]["metrics"] is None
    fields = {f["field"]: f for f in result["fields"]}
    assert fields["temperature"]["differs"] is True
    assert fields["temperature"]["values"] == {"agent": 0.2, "terse": 0.0, "plain": 0.2}
    assert fields["temperature"]["sources"] == {
        "agent": "agent",
        "terse": "variant",
        "plain": "agent",
    }
    assert fields["model_name"]["differs"] is False
    (diff,) = result["prompt_diffs"]
    assert diff["variant"] == "terse"
    assert diff["field"] == "system_prompt"
    assert "+Be terse.\n" in diff["diff"]
    # the base prompt has no final newline, yet its line is the same line, kept as context
    assert diff["diff"].endswith("@@\n You extract facts.\n+Be terse.\n")
    assert missing.status_code == 404


async def test_promote_the_best_config_of_a_sweep(
    client: httpx.AsyncClient, app: FastAPI, owner, agent, project_id
):
    experiment, board = await finished(client, app, owner, project_id, TWO_MODELS)
    best, second = board[0], board[1]

    promoted = await client.post(
        f"/api/agents/{agent['id']}/variants/from-experiment",
        json={"experiment_id": experiment["id"]},
        headers=owner.headers,
    )
    chosen = await client.post(
        f"/api/agents/{agent['id']}/variants/from-experiment",
        json={
            "experiment_id": experiment["id"],
            "config_hash": second["config_hash"],
            "name": "Runner-up",
        },
        headers=owner.headers,
    )
    unknown = await client.post(
        f"/api/agents/{agent['id']}/variants/from-experiment",
        json={"experiment_id": experiment["id"], "config_hash": "feedfacefeedface"},
        headers=owner.headers,
    )

    assert promoted.status_code == 201, promoted.text
    body = promoted.json()
    model_provider, model_name = best["parameters"]["model"].split(":")
    assert body["overrides"] == {
        "model_provider": model_provider,
        "model_name": model_name,
        "user_prompt_template": "Classify: {{ input }}. One word.",
        "temperature": 0.0,
    }
    assert body["unmapped_parameters"] == ["seed"]
    assert body["origin"]["experiment_id"] == experiment["id"]
    assert body["origin"]["config_hash"] == best["config_hash"]
    assert body["config"]["max_tokens"] == 512  # everything else still follows the agent
    assert chosen.json()["origin"]["config_hash"] == second["config_hash"]
    assert chosen.json()["slug"] == "runner-up"
    assert unknown.status_code == 404


async def test_promoting_needs_scored_runs_and_single_stage_configs(
    client: httpx.AsyncClient, app: FastAPI, owner, agent, project_id
):
    draft = await create(client, owner, project_id, document(name="draft"))
    pipeline = await create(
        client,
        owner,
        project_id,
        document(
            name="pipe",
            parameter_space={"model": ["mock:large"]},
            pipeline=[
                {"prompt_template": "A {{ input }}", "model": "{{ config.model }}"},
                {"prompt_template": "B {{ prev_output }}", "model": "mock:echo"},
            ],
        ),
    )
    await run_to_end(client, app, owner, pipeline["id"])

    not_run = await client.post(
        f"/api/agents/{agent['id']}/variants/from-experiment",
        json={"experiment_id": draft["id"]},
        headers=owner.headers,
    )
    piped = await client.post(
        f"/api/agents/{agent['id']}/variants/from-experiment",
        json={"experiment_id": pipeline["id"]},
        headers=owner.headers,
    )
    missing = await client.post(
        f"/api/agents/{agent['id']}/variants/from-experiment",
        json={"experiment_id": str(uuid.uuid4())},
        headers=owner.headers,
    )

    assert not_run.status_code == 422
    assert "no scored runs" in not_run.json()["detail"]
    assert piped.status_code == 422
    assert "pipeline config" in piped.json()["detail"]
    assert missing.status_code == 404


async def test_promote_takes_the_leaderboards_short_hash_and_refuses_an_ambiguous_prefix(
    client: httpx.AsyncClient, app: FastAPI, owner, agent, project_id
):
    # 17 configs: two of them must share their first hex digit.
    temperatures = [round(i * 0.05, 2) for i in range(17)]
    doc = document(
        parameter_space={
            "model": ["mock:large"],
            "temperature": temperatures,
            "prompt": ["Classify: {{ input }}. One word."],
        },
        dataset={"rows": ROWS[:1]},
    )
    experiment, board = await finished(client, app, owner, project_id, doc)
    hashes = [entry["config_hash"] for entry in board]
    target = hashes[-1]
    first_digits = [h[0] for h in hashes]
    shared = next(d for d in first_digits if first_digits.count(d) > 1)
    url = f"/api/agents/{agent['id']}/variants/from-experiment"

    short = await client.post(
        url,
        json={"experiment_id": experiment["id"], "config_hash": target[:8].upper()},
        headers=owner.headers,
    )
    ambiguous = await client.post(
        url, json={"experiment_id": experiment["id"], "config_hash": shared}, headers=owner.headers
    )

    assert short.status_code == 201, short.text
    assert short.json()["origin"]["config_hash"] == target
    assert ambiguous.status_code == 422
    detail = ambiguous.json()["detail"]
    assert detail.startswith("config_hash:")
    for candidate in (h for h in hashes if h.startswith(shared)):
        assert candidate in detail
