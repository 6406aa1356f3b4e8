"""Experiments through the HTTP API on both databases: create, validate, run, inspect."""

from __future__ import annotations

import asyncio
import json
import math
import uuid

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from promptlooper.sweeps.models import CacheEntry, Run, Score, StageResult
from tests.factories import make_actor
from tests.sweeps.conftest import ROWS, create, document, run_to_end


async def _counts(sessionmaker, experiment_id: str) -> tuple[int, int, int]:
    eid = uuid.UUID(experiment_id)
    async with sessionmaker() as session:
        runs = await session.scalar(select(func.count()).where(Run.experiment_id == eid))
        stages = await session.scalar(
            select(func.count()).select_from(StageResult).join(Run).where(Run.experiment_id == eid)
        )
        scores = await session.scalar(
            select(func.count()).select_from(Score).join(Run).where(Run.experiment_id == eid)
        )
    return runs or 0, stages or 0, scores or 0


async def test_create_run_and_inspect_an_experiment(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, document())
    assert experiment["status"] == "draft"
    assert experiment["total_runs"] == 8 * 3
    assert experiment["scoring_config"] == {"weights": {"accuracy": 0.7, "brevity": 0.3}}

    final = await run_to_end(client, app, owner, experiment["id"])

    assert final["status"] == "completed"
    assert final["progress"] == {"pending": 0, "completed": 24, "failed": 0, "cached": 0}
    assert await _counts(sessionmaker, experiment["id"]) == (24, 24, 48)

    board = (
        await client.get(f"/api/experiments/{experiment['id']}/leaderboard", headers=owner.headers)
    ).json()
    assert len(board["data"]) == 8
    scores = [entry["score"] for entry in board["data"]]
    assert scores == sorted(scores, reverse=True)
    top = board["data"][0]
    assert top["runs"] == 3
    assert set(top["scores"]) == {"accuracy", "brevity"}
    assert top["parameters"]["model"] == "mock:large"
    assert top["p50_latency_ms"] is not None

    runs = (
        await client.get(
            f"/api/experiments/{experiment['id']}/runs",
            params={"config_hash": top["config_hash"], "limit": 2},
            headers=owner.headers,
        )
    ).json()
    assert runs["count"] == 3
    assert len(runs["data"]) == 2
    detail = (
        await client.get(
            f"/api/experiments/{experiment['id']}/runs/{runs['data'][0]['id']}",
            headers=owner.headers,
        )
    ).json()
    assert detail["config"]["model"] == "mock:large"
    assert detail["config"]["params"] == {"temperature": top["parameters"]["temperature"]}
    assert detail["config"]["input_data"] == ROWS[detail["row_index"]]
    (stage,) = detail["stages"]
    assert ROWS[detail["row_index"]]["input"] in stage["prompt_sent"]
    assert stage["model_used"].endswith("(simulated)")
    assert set(detail["scores"]) == {"accuracy", "brevity"}
    assert detail["weighted_score"] is not None


async def test_start_is_idempotent_and_a_rerun_runs_nothing_twice(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    doc = document()
    doc["providers"]["mock"]["latency_ms"] = 20
    experiment = await create(client, owner, project_id, doc)
    url = f"/api/experiments/{experiment['id']}/start"

    first = await client.post(url, headers=owner.headers)
    second = await client.post(url, headers=owner.headers)
    await app.state.sweep_jobs.wait(uuid.UUID(experiment["id"]))
    third = await client.post(url, headers=owner.headers)
    await app.state.sweep_jobs.wait(uuid.UUID(experiment["id"]))

    assert (first.json()["started"], second.json()["started"]) == (True, False)
    assert third.status_code == 202
    assert await _counts(sessionmaker, experiment["id"]) == (24, 24, 48)


async def test_cancel_keeps_finished_runs_and_start_resumes(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    doc = document(concurrency=2, dataset={"rows": ROWS * 4})
    doc["providers"]["mock"]["latency_ms"] = 30
    experiment = await create(client, owner, project_id, doc)
    eid = experiment["id"]

    await client.post(f"/api/experiments/{eid}/start", headers=owner.headers)
    await asyncio.sleep(0.4)
    cancelled = await client.post(f"/api/experiments/{eid}/cancel", headers=owner.headers)
    after_cancel = (await client.get(f"/api/experiments/{eid}", headers=owner.headers)).json()
    final = await run_to_end(client, app, owner, eid)

    assert cancelled.status_code == 202
    assert after_cancel["status"] == "cancelled"
    assert 0 < after_cancel["progress"]["completed"] < 96
    assert final["status"] == "completed"
    assert final["progress"]["completed"] == 96
    assert await _counts(sessionmaker, eid) == (96, 96, 192)
    not_running = await client.post(f"/api/experiments/{eid}/cancel", headers=owner.headers)
    assert not_running.status_code == 409


async def test_events_stream_as_server_sent_events(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    doc = document()
    doc["providers"]["mock"]["latency_ms"] = 10
    experiment = await create(client, owner, project_id, doc)
    eid = experiment["id"]
    await client.post(f"/api/experiments/{eid}/start", headers=owner.headers)

    seen: list[str] = []
    async with client.stream("GET", f"/api/experiments/{eid}/events", headers=owner.headers) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        async for line in r.aiter_lines():
            if line.startswith("event: "):
                seen.append(line.removeprefix("event: "))
    await app.state.sweep_jobs.wait(uuid.UUID(eid))

    assert seen[0] == "progress"
    assert seen[-1] == "experiment.completed"
    assert seen.count("run.completed") >= 1
    assert "run.stage_completed" in seen


async def test_events_of_a_finished_experiment_are_a_snapshot(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    experiment = await create(client, owner, project_id, document())
    await run_to_end(client, app, owner, experiment["id"])

    response = await client.get(
        f"/api/experiments/{experiment['id']}/events", headers=owner.headers
    )

    assert response.text.startswith("event: progress\n")
    assert '"completed": 24' in response.text


async def test_pipeline_stages_take_typed_config_values(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    doc = document(
        parameter_space={"model": ["mock:large"], "temperature": [0.0, 0.7], "style": ["terse"]},
        pipeline=[
            {
                "prompt_template": "Summarise ({{ config.style }}): {{ input }}",
                "model": "{{ config.model }}",
                "params": {"temperature": "{{ config.temperature }}"},
            },
            {"prompt_template": "Answer with one word: {{ prev_output }}", "model": "mock:echo"},
        ],
    )
    experiment = await create(client, owner, project_id, doc)
    await run_to_end(client, app, owner, experiment["id"])

    async with sessionmaker() as session:
        run = await session.scalar(
            select(Run).where(Run.experiment_id == uuid.UUID(experiment["id"])).limit(1)
        )
        stages = list(
            await session.scalars(
                select(StageResult)
                .where(StageResult.run_id == run.id)
                .order_by(StageResult.stage_index)
            )
        )
    assert isinstance(run.config["pipeline_stages"][0]["params"]["temperature"], float)
    assert run.config["input_data"] in ROWS
    assert stages[0].prompt_sent.startswith("Summarise (terse): ")
    assert stages[1].prompt_sent == f"Answer with one word: {stages[0].response_raw}"
    assert stages[1].response_raw == stages[1].prompt_sent  # mock:echo


async def test_repeats_bypass_the_cache_and_cache_false_writes_none(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    repeated = await create(client, owner, project_id, document(repeats=2))
    final = await run_to_end(client, app, owner, repeated["id"])
    again = await create(client, owner, project_id, document(repeats=2))
    rerun = await run_to_end(client, app, owner, again["id"])

    assert final["progress"]["completed"] == 48
    assert rerun["progress"]["cached"] == 24  # the first repeat of each run only
    async with sessionmaker() as session:
        entries = await session.scalar(select(func.count()).select_from(CacheEntry))
    assert entries == 24

    uncached = await create(client, owner, project_id, document(name="no-cache", cache=False))
    done = await run_to_end(client, app, owner, uncached["id"])
    assert done["progress"]["cached"] == 0


async def test_a_failing_provider_fails_runs_not_the_experiment(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    doc = document(
        parameter_space={"model": ["openai:gpt"], "prompt": ["Hi {{ input }}"]},
        providers={"openai": {"base_url": "http://127.0.0.1:1/v1", "max_retries": 0, "timeout": 2}},
    )
    experiment = await create(client, owner, project_id, doc)
    final = await run_to_end(client, app, owner, experiment["id"])

    assert final["status"] == "completed"
    assert final["progress"]["failed"] == 3
    runs = (
        await client.get(
            f"/api/experiments/{experiment['id']}/runs?status=failed", headers=owner.headers
        )
    ).json()
    assert runs["count"] == 3
    assert "cannot reach openai" in runs["data"][0]["error"]
    assert runs["data"][0]["completed_at"] is not None


async def test_list_experiments_with_progress(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id
):
    first = await create(client, owner, project_id, document(name="one"))
    await create(client, owner, project_id, document(name="two"))
    await run_to_end(client, app, owner, first["id"])

    listed = (
        await client.get(f"/api/projects/{project_id}/experiments", headers=owner.headers)
    ).json()

    assert listed["count"] == 2
    by_name = {e["name"]: e for e in listed["data"]}
    assert by_name["one"]["progress"]["completed"] == 24
    assert by_name["two"]["status"] == "draft"


async def test_other_users_cannot_see_or_run_an_experiment(
    client: httpx.AsyncClient, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, document())
    intruder = await make_actor(sessionmaker, "intruder")
    eid = experiment["id"]

    responses = [
        await client.get(f"/api/experiments/{eid}", headers=intruder.headers),
        await client.post(f"/api/experiments/{eid}/start", headers=intruder.headers),
        await client.get(f"/api/experiments/{eid}/runs", headers=intruder.headers),
        await client.get(f"/api/export/experiments/{eid}/report", headers=intruder.headers),
        await client.post(
            f"/api/projects/{project_id}/experiments", json=document(), headers=intruder.headers
        ),
    ]
    assert [r.status_code for r in responses] == [403] * 5


async def test_delete_experiment(
    client: httpx.AsyncClient, app: FastAPI, owner, project_id, sessionmaker
):
    experiment = await create(client, owner, project_id, document())
    await run_to_end(client, app, owner, experiment["id"])

    deleted = await client.delete(f"/api/experiments/{experiment['id']}", headers=owner.headers)

    assert deleted.status_code == 204
    assert await _counts(sessionmaker, experiment["id"]) == (0, 0, 0)
    missing = await client.get(f"/api/experiments/{experiment['id']}", headers=owner.headers)
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"scorers": [{"name": "x", "type": "telepathy"}]},
            "scorers[0]: unknown scorer type 'telepathy'",
        ),
        (
            {"parameter_space": {"model": ["nope:m"], "prompt": ["p"]}},
            "parameter_space.model: unknown provider 'nope'",
        ),
        (
            {"parameter_space": {"model": ["mock"], "prompt": ["p"]}},
            "must be written provider:model",
        ),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": ["{% if %}"]}},
            "parameter_space.prompt: template syntax error",
        ),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": ["Hi {{ customer }}"]}},
            "undefined template variable 'customer'",
        ),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": ["{{ config.tone }}"]}},
            "config.tone is not a parameter",
        ),
        (
            {"parameter_space": {"model": [], "prompt": ["p"]}},
            "model: an empty list makes the grid empty",
        ),
        (
            {"parameter_space": {"model": ["mock:a"]}},
            "parameter_space.prompt: needed when there is no pipeline",
        ),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": ["p"], "top-p": [0.5]}},
            "'top-p': a parameter name is used as {{ config.NAME }}",
        ),
        (
            {"scorers": [{"name": "a", "type": "length", "max": 5, "weight": -1}]},
            "scorers.0.weight",
        ),
        (
            {"scorers": [{"name": "a", "type": "length", "max": 5, "weight": 0}]},
            "the weights add up to 0",
        ),
        (
            {"scoring_config": {"weights": {"fluency": 0.3}}},
            "scoring_config.weights.fluency: no scorer",
        ),
        ({"scorers": [{"name": "a", "type": "length"}]}, "give min, max or both"),
        (
            {"scorers": [{"name": "a", "type": "regex", "pattern": "("}]},
            "not a valid regular expression",
        ),
        ({"scorers": [{"name": "a", "type": "exact_match", "ignore_cse": True}]}, "ignore_cse"),
        (
            {"scorers": [{"name": "a", "type": "exact_match"}, {"name": "a", "type": "contains"}]},
            "two scorers are named 'a'",
        ),
        ({"dataset": {"rows": [{"input": "no expected"}]}}, "dataset row 0 has none"),
        ({"dataset": {"rows": []}}, "the dataset has no rows"),
        ({"dataset": {"path": "tickets.jsonl"}}, "dataset.path: files are read by the CLI"),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": [{"file": "p.j2"}]}},
            "files are read by the CLI",
        ),
        ({"search": {"strategy": "random"}}, "random search needs n"),
        (
            {"parameter_space": {"model": ["python:os:system"], "prompt": ["p"]}},
            "unknown provider 'python'",
        ),
        (
            {"scorers": [{"name": "p", "type": "python", "callable": "os:system"}]},
            "python callables are disabled",
        ),
        (
            {"providers": {"x": {"type": "smoke-signals"}}},
            "providers.x.type: unknown provider type",
        ),
        (
            {"providers": {"openai": {"base_url": "127.0.0.1:8001/v1"}}},
            "providers.openai.base_url: must be an http:// or https:// URL",
        ),
        (
            {"providers": {"openai": {"api_key_env": "PL_TEST_UNSET_KEY"}}},
            "providers.openai.api_key_env: PL_TEST_UNSET_KEY is not a key this server offers",
        ),
        (
            {"providers": {"openai": {"api_key_env": "OPENAI_API_KEY", "credential": "k"}}},
            "providers.openai: give credential or api_key_env, not both",
        ),
        (
            {"providers": {"openai": {"credential": "no such/name"}}},
            "providers.openai.credential: must start with a letter or digit, then letters, "
            "digits, _ . or - only (64 characters at most)",
        ),
        (
            {"providers": {"mock": {"credential": "k"}}},
            "providers.mock.credential: mock providers send no key",
        ),
        (
            {"pipeline": [{"prompt_template": "x", "model": "{{ input }}"}]},
            "pipeline[0].model: may use config values only",
        ),
        (  # text, never a path the server would read
            {"providers": {"openai": {"ca_bundle": "/etc/ssl/certs/ca-certificates.crt"}}},
            "providers.openai.ca_bundle: not a PEM certificate bundle: no start line",
        ),
        (
            {"providers": {"openai": {"ca_bundle": {"file": "ca.pem"}}}},
            "providers.openai.ca_bundle: give the PEM text inline",
        ),
        ({"colour": "blue"}, "colour"),
        ({"repeats": 0}, "repeats"),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": ["{{ expected }}"]}},
            "`expected` is kept from prompts",
        ),
        (  # JSON parsers here read Infinity and NaN (YAML too: .inf, .nan)
            {"scorers": [{"name": "a", "type": "length", "max": 5, "weight": math.inf}]},
            "scorers.0.weight: Input should be a finite number",
        ),
        (
            {"providers": {"mock": {"rate_limit": math.nan}}},
            "providers.mock.rate_limit: Input should be a finite number",
        ),
        (  # NaN and infinity in free-form values used to be stored as null
            {"parameter_space": {"model": ["mock:a"], "prompt": ["Hi"], "t": [0.5, math.nan]}},
            "parameter_space.t.1: Input should be a finite number",
        ),
        (
            {"dataset": {"rows": [{"input": "x", "weight": -math.inf}]}},
            "dataset.rows.0.weight: Input should be a finite number",
        ),
        (  # templates past the sandbox's limits, whatever the row (issue 19, item 9)
            {"parameter_space": {"model": ["mock:a"], "prompt": ["{{ 'a' * 10**9 }}"]}},
            "parameter_space.prompt: template exceeded a limit: it builds a value of 1,000,000,000",
        ),
        (
            {"parameter_space": {"model": ["mock:a"], "prompt": ["{{ lipsum(10**6) }}"]}},
            "parameter_space.prompt: template exceeded a limit: it builds lorem ipsum",
        ),
        (  # past them for the first row
            {"pipeline": [{"prompt_template": "{{ input * 10**6 }}", "model": "mock:a"}]},
            "pipeline[0].prompt_template: template exceeded a limit",
        ),
        (
            {"pipeline": [{"prompt_template": "x", "model": "{{ 'mock:a' ~ 'a' * 10**9 }}"}]},
            "pipeline[0].model: template exceeded a limit",
        ),
        (
            {
                "scorers": [
                    {
                        "name": "judge",
                        "type": "llm_judge",
                        "model": "mock:small",
                        "rubric": "correct",
                        "prompt": "{{ output }}{{ 'a' | center(10**9) }}",
                    }
                ]
            },
            "scorers[0].prompt: template exceeded a limit: it builds a padded string",
        ),
        (
            {"scorers": [{"name": "a", "type": "exact_match", "value": "{{ range(10**9) }}"}]},
            "scorers[0].value: template exceeded a limit: it makes a range",
        ),
    ],
)
async def test_bad_sweep_documents_are_422_naming_the_field(
    client: httpx.AsyncClient, owner, project_id, sessionmaker, changes: dict, message: str
):
    response = await client.post(
        f"/api/projects/{project_id}/experiments",
        content=json.dumps(document(**changes)),  # httpx's json= refuses NaN and Infinity
        headers={**owner.headers, "Content-Type": "application/json"},
    )

    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    if isinstance(detail, list):  # schema errors: one per field, with its path
        detail = "; ".join(".".join(map(str, e["loc"][1:])) + ": " + e["msg"] for e in detail)
    assert message in detail
    listed = (
        await client.get(f"/api/projects/{project_id}/experiments", headers=owner.headers)
    ).json()
    assert listed["count"] == 0
