"""A model's output is data: whatever it answers is stored, and never fails the sweep."""

from __future__ import annotations

import uuid

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from promptlooper.sweeps.models import CacheEntry, Experiment
from tests.factories import Actor
from tests.sweeps.conftest import create, document, run_to_end

STORED = "billing\ufffd or \ufffdbug"


def unstorable_sweep(base_url: str, name: str = "unstorable") -> dict:
    return document(
        name=name,
        parameter_space={"model": ["openai:small"], "prompt": ["{{ input }} [unstorable]"]},
        providers={"openai": {"base_url": base_url, "max_retries": 0}},
    )


async def runs_of(client: httpx.AsyncClient, owner: Actor, experiment_id: str) -> list[dict]:
    listed = await client.get(f"/api/experiments/{experiment_id}/runs", headers=owner.headers)
    return [
        (
            await client.get(
                f"/api/experiments/{experiment_id}/runs/{run['id']}", headers=owner.headers
            )
        ).json()
        for run in listed.json()["data"]
    ]


async def test_text_the_database_cannot_store_is_replaced_and_the_run_marked(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner: Actor,
    project_id: str,
    sessionmaker,
    fake_openai,
):
    server, base_url = fake_openai
    experiment = await create(client, owner, project_id, unstorable_sweep(base_url))

    final = await run_to_end(client, app, owner, experiment["id"])
    runs = await runs_of(client, owner, experiment["id"])
    again = await create(client, owner, project_id, unstorable_sweep(base_url, "again"))
    replayed = await run_to_end(client, app, owner, again["id"])
    replayed_runs = await runs_of(client, owner, again["id"])

    assert (final["status"], final["error"]) == ("completed", None)
    assert final["progress"]["completed"] == 3
    assert [run["stages"][0]["response_raw"] for run in runs] == [STORED] * 3
    assert all(run["sanitized"] and run["error"] is None for run in runs)
    async with sessionmaker() as session:
        cached = (await session.scalars(select(CacheEntry))).all()
    assert [(entry.response, entry.sanitized) for entry in cached] == [(STORED, True)] * 3
    assert (replayed["progress"]["cached"], server.requests) == (3, 3)
    assert all(run["sanitized"] for run in replayed_runs)


async def test_an_experiment_such_output_failed_resumes_and_completes(
    client: httpx.AsyncClient,
    app: FastAPI,
    owner: Actor,
    project_id: str,
    sessionmaker,
    fake_openai,
):
    _, base_url = fake_openai
    experiment = await create(client, owner, project_id, unstorable_sweep(base_url))
    async with sessionmaker() as session:  # how a sweep ended when such output reached the database
        await session.execute(
            update(Experiment)
            .where(Experiment.id == uuid.UUID(experiment["id"]))
            .values(
                status="failed",
                error="DataError: invalid byte sequence for encoding UTF8: 0x00",
            )
        )
        await session.commit()

    final = await run_to_end(client, app, owner, experiment["id"])

    assert (final["status"], final["error"]) == ("completed", None)
    assert final["progress"] == {"pending": 0, "completed": 3, "failed": 0, "cached": 0}
