"""Submitting without waiting: calls queue in order, and their outcome is fetched by id."""

from __future__ import annotations

import asyncio

import httpx

from tests.factories import Actor
from tests.training.conftest import new_run

GOOD = {"examples": [{"text": "The capital of France is Paris."}]}


async def result_of(client: httpx.AsyncClient, actor: Actor, future_id: str) -> httpx.Response:
    """The future's answer, waited for on the server (a first call loads the model, which on
    a busy machine takes a while)."""
    url = f"/api/training/futures/{future_id}?wait_seconds=10"
    for _ in range(12):
        response = await client.get(url, headers=actor.headers)
        if response.status_code != 202:
            return response
        assert response.json()["status"] == "pending"
    raise AssertionError("the future never finished")


async def test_pipelined_calls_run_in_order(client: httpx.AsyncClient, alice: Actor) -> None:
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}"
    tickets = []
    for op, body in [
        ("forward_backward", GOOD),
        ("optim_step", {"learning_rate": 1e-2}),
        ("forward_backward", GOOD),
        ("optim_step", {"learning_rate": 1e-2}),
    ]:
        response = await client.post(f"{url}/{op}?wait=false", json=body, headers=alice.headers)
        assert response.status_code == 202
        assert response.json()["operation"] == op
        tickets.append(response.json()["future_id"])
    outcomes = [(await result_of(client, alice, t)).json() for t in tickets]
    assert [o["status"] for o in outcomes] == ["done"] * 4
    assert [outcomes[1]["result"]["step"], outcomes[3]["result"]["step"]] == [1, 2]
    assert outcomes[2]["result"]["loss"] < outcomes[0]["result"]["loss"]
    metrics = (await client.get(f"{url}/metrics", headers=alice.headers)).json()
    assert [m["step"] for m in metrics["steps"]] == [1, 2]


async def test_a_failed_future_answers_with_the_calls_error(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    run = await new_run(client, alice)
    response = await client.post(
        f"/api/training/runs/{run}/optim_step?wait=false", headers=alice.headers
    )
    assert response.status_code == 202
    outcome = await result_of(client, alice, response.json()["future_id"])
    assert outcome.status_code == 400
    assert "forward_backward" in outcome.json()["detail"]


async def test_futures_belong_to_their_caller(
    client: httpx.AsyncClient, alice: Actor, bob: Actor
) -> None:
    run = await new_run(client, alice)
    response = await client.post(
        f"/api/training/runs/{run}/forward?wait=false", json=GOOD, headers=alice.headers
    )
    future_id = response.json()["future_id"]
    await result_of(client, alice, future_id)
    other = await client.get(f"/api/training/futures/{future_id}", headers=bob.headers)
    assert other.status_code == 404  # ids are per user: bob has none of that id
    unknown = await client.get("/api/training/futures/nope", headers=alice.headers)
    assert unknown.status_code == 404


async def test_a_finished_futures_result_expires_after_the_ttl(
    client: httpx.AsyncClient, alice: Actor, monkeypatch
) -> None:
    from promptlooper.training import trainer

    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}/forward?wait=false"
    first = (await client.post(url, json=GOOD, headers=alice.headers)).json()["future_id"]
    assert (await result_of(client, alice, first)).status_code == 200
    await asyncio.sleep(0)  # its done callback, which notes when it finished, runs a turn later

    monkeypatch.setattr(trainer, "FUTURE_TTL", 0.0)  # every finished result is now stale
    second = (await client.post(url, json=GOOD, headers=alice.headers)).json()["future_id"]

    expired = await client.get(f"/api/training/futures/{first}", headers=alice.headers)
    assert expired.status_code == 404
    assert (await result_of(client, alice, second)).status_code == 200  # kept until it ends


async def test_a_samples_time_is_its_own_not_the_queues(
    client: httpx.AsyncClient, alice: Actor
) -> None:
    """Queued samples run one after another: each one's ``elapsed_ms`` leaves out the wait
    behind the others, so together they take no longer than the whole queue did."""
    run = await new_run(client, alice)
    url = f"/api/training/runs/{run}/sample?wait=false"
    body = {"prompts": ["The capital of France"], "max_tokens": 8, "temperature": 0}
    await client.post(url.replace("?wait=false", ""), json=body, headers=alice.headers)  # warm
    started = asyncio.get_running_loop().time()
    tickets = [
        (await client.post(url, json=body, headers=alice.headers)).json()["future_id"]
        for _ in range(4)
    ]
    results = [(await result_of(client, alice, t)).json()["result"] for t in tickets]
    waited_ms = (asyncio.get_running_loop().time() - started) * 1000
    elapsed = [r["elapsed_ms"] for r in results]
    assert all(e > 0 for e in elapsed)
    assert sum(elapsed) < waited_ms
