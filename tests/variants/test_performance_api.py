"""The performance log, metrics and history through the HTTP API on both databases."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from tests.variants.conftest import make_agent, make_variant


async def test_log_and_read_metrics_per_variant(client: httpx.AsyncClient, owner, agent):
    a = await make_variant(client, owner, agent, name="A")
    b = await make_variant(client, owner, agent, name="B")
    records = [
        {
            "variant_id": a["id"],
            "revision": "1.1",
            "latency_ms": 100 + i,
            "tokens_in": 50,
            "tokens_out": 10,
            "cost": 0.002,
            "success": i < 8,
            "quality": 0.8,
        }
        for i in range(10)
    ]
    records.append({"latency_ms": 300, "success": False, "error": "timeout"})  # base config

    batch = await client.post(
        f"/api/agents/{agent['id']}/performance", json=records, headers=owner.headers
    )
    single = await client.post(
        f"/api/agents/{agent['id']}/performance",
        json={"variant_id": b["id"], "latency_ms": 50, "quality": 1.0},
        headers=owner.headers,
    )
    metrics = (await client.get(f"/api/agents/{agent['id']}/metrics", headers=owner.headers)).json()

    assert batch.json() == {"recorded": 11}
    assert single.status_code == 201
    by_variant = {m["variant_slug"]: m for m in metrics["data"]}
    assert set(by_variant) == {None, "a", "b"}
    assert by_variant["a"]["n"] == 10
    assert by_variant["a"]["success_rate"] == pytest.approx(0.8)
    assert by_variant["a"]["success_ci"] == [
        pytest.approx(0.4902, abs=1e-4),
        pytest.approx(0.9433, abs=1e-4),
    ]
    assert by_variant["a"]["latency_p50_ms"] == pytest.approx(104.5)
    assert by_variant["a"]["mean_cost"] == pytest.approx(0.002)
    assert by_variant["a"]["quality_mean"] == pytest.approx(0.8)
    assert by_variant["b"]["n"] == 1
    assert by_variant["b"]["quality_ci"] == [None, None]
    assert by_variant[None]["success_rate"] == 0.0


async def test_a_window_ending_in_year_one_starts_at_the_first_date(
    client: httpx.AsyncClient, owner, agent
):
    """The default window starts 30 days before `until`: before year 1 there is no date."""
    url = f"/api/agents/{agent['id']}"
    metrics = await client.get(
        f"{url}/metrics", params={"until": "0001-01-02T00:00:00Z"}, headers=owner.headers
    )
    history = await client.get(
        f"{url}/history", params={"until": "0001-01-02T00:00:00Z"}, headers=owner.headers
    )
    empty = await client.get(
        f"{url}/metrics", params={"until": "0001-01-01T00:00:00Z"}, headers=owner.headers
    )

    assert (metrics.status_code, history.status_code) == (200, 200)
    assert metrics.json()["since"] == "0001-01-01T00:00:00Z"
    assert metrics.json()["data"] == history.json()["data"] == []
    assert empty.status_code == 422
    assert empty.json()["detail"] == "since: must be before until"


async def test_window_and_history_buckets(client: httpx.AsyncClient, owner, agent):
    a = await make_variant(client, owner, agent, name="A")
    now = datetime.now(UTC).replace(minute=30)
    stamps = [
        now - timedelta(days=3),
        now - timedelta(days=3, hours=1),
        now - timedelta(hours=2),
        now - timedelta(days=40),
    ]
    await client.post(
        f"/api/agents/{agent['id']}/performance",
        json=[
            {"variant_id": a["id"], "latency_ms": 10, "timestamp": t.isoformat()} for t in stamps
        ],
        headers=owner.headers,
    )

    days = (
        await client.get(f"/api/agents/{agent['id']}/history?bucket=day", headers=owner.headers)
    ).json()
    hours = (
        await client.get(f"/api/agents/{agent['id']}/history?bucket=hour", headers=owner.headers)
    ).json()
    window = (
        await client.get(
            f"/api/agents/{agent['id']}/metrics",
            params={"since": (now - timedelta(days=1)).isoformat()},
            headers=owner.headers,
        )
    ).json()

    assert [p["n"] for p in days["data"]] in ([2, 1], [1, 1, 1])  # the last 30 days only
    assert sum(p["n"] for p in hours["data"]) == 3
    assert len(hours["data"]) == 3
    assert all(p["bucket_start"].endswith(("00:00Z", "00:00+00:00")) for p in hours["data"])
    assert {m["variant_slug"]: m["n"] for m in window["data"]} == {"a": 1}


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"quality": 1.5}, 422),
        ({"latency_ms": -1}, 422),
        ({"tokens_in": 2**31}, 422),
        ({"surprise": True}, 422),
        ([], 422),
        ({"variant_id": str(uuid.uuid4())}, 422),
        ({"timestamp": "2099-01-01T00:00:00Z"}, 422),
        ({"timestamp": "2026-01-01T00:00:00"}, 422),
    ],
)
async def test_bad_performance_records_are_refused_whole(
    client: httpx.AsyncClient, owner, agent, body, status
):
    payload = [{"latency_ms": 5}, body] if isinstance(body, dict) else body
    response = await client.post(
        f"/api/agents/{agent['id']}/performance", json=payload, headers=owner.headers
    )
    metrics = (await client.get(f"/api/agents/{agent['id']}/metrics", headers=owner.headers)).json()

    assert response.status_code == status, response.text
    assert metrics["data"] == []  # nothing half-written


@pytest.mark.parametrize("field", ["latency_ms", "cost"])
async def test_infinite_numbers_are_refused_whole(client: httpx.AsyncClient, owner, agent, field):
    """JSON parsers here read Infinity; one such latency made every percentile meaningless."""
    response = await client.post(
        f"/api/agents/{agent['id']}/performance",
        content=json.dumps([{"latency_ms": 5}, {field: float("inf")}]),
        headers={**owner.headers, "Content-Type": "application/json"},
    )
    metrics = (await client.get(f"/api/agents/{agent['id']}/metrics", headers=owner.headers)).json()

    assert response.status_code == 422
    assert "Input should be a finite number" in [e["msg"] for e in response.json()["detail"]]
    assert metrics["data"] == []


async def test_a_variant_of_another_agent_is_refused(
    client: httpx.AsyncClient, owner, agent, project_id
):
    other = await make_agent(client, owner, project_id, "Other")
    theirs = await make_variant(client, owner, other, name="X")

    response = await client.post(
        f"/api/agents/{agent['id']}/performance",
        json={"variant_id": theirs["id"]},
        headers=owner.headers,
    )

    assert response.status_code == 422
    assert "is not a variant of this agent" in response.json()["detail"]


@pytest.mark.parametrize(
    ("body", "loc", "msg"),
    [
        ({"tokens_in": -1}, ["body", "tokens_in"], "greater than or equal to 0"),
        ({"surprise": True}, ["body", "surprise"], "Extra inputs are not permitted"),
        ([{"latency_ms": 5}, {"cost": "a"}], ["body", 1, "cost"], "a valid number"),
        ([], ["body"], "at least 1 item"),
        ("x", ["body"], "must be a mapping of fields (name: value)"),
        (["x"], ["body", 0], "must be a mapping of fields (name: value)"),
    ],
)
async def test_refusals_point_into_the_body_as_it_was_sent(
    client: httpx.AsyncClient, owner, agent, body, loc, msg
):
    """One record or a list: a 422 reads the body the way it came, and names the API's fields,
    never the schema's internal models or the reading that did not apply."""
    response = await client.post(
        f"/api/agents/{agent['id']}/performance", json=body, headers=owner.headers
    )

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc
    assert msg in problem["msg"]
    assert "PerformanceIn" not in response.text


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"unit_id": "a\u0000b"}, ["body", "unit_id"]),
        ([{"revision": "caf\u00e9"}, {"error": "x\u0000"}], ["body", 1, "error"]),
    ],
)
async def test_unstorable_text_is_refused_at_its_place(
    client: httpx.AsyncClient, owner, agent, body, loc
):
    """Records are checked for unstorable text only when the body has escapes to hold it:
    the check must still find it wherever it is, in one record or a list."""
    response = await client.post(
        f"/api/agents/{agent['id']}/performance",
        content=json.dumps(body),
        headers={**owner.headers, "Content-Type": "application/json"},
    )
    metrics = (await client.get(f"/api/agents/{agent['id']}/metrics", headers=owner.headers)).json()

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == loc
    assert "NUL" in problem["msg"]
    assert metrics["data"] == []


async def test_omitted_tokens_and_cost_are_unknown_not_zero(
    client: httpx.AsyncClient, owner, agent
):
    """A caller that does not know a call's cost leaves it out; counting it as free would halve
    the mean of the calls that did report one."""
    records = [
        {"latency_ms": 10, "tokens_in": 100, "tokens_out": 20, "cost": 0.004},
        {"latency_ms": 10, "tokens_in": 300},
        {"latency_ms": 10},
    ]

    logged = await client.post(
        f"/api/agents/{agent['id']}/performance", json=records, headers=owner.headers
    )
    metrics = (await client.get(f"/api/agents/{agent['id']}/metrics", headers=owner.headers)).json()

    assert logged.status_code == 201, logged.text
    (base,) = metrics["data"]
    assert base["n"] == 3
    assert base["mean_tokens_in"] == pytest.approx(200)
    assert base["tokens_in_n"] == 2
    assert base["mean_tokens_out"] == pytest.approx(20)
    assert base["tokens_out_n"] == 1
    assert base["mean_cost"] == pytest.approx(0.004)
    assert base["cost_n"] == 1


async def test_the_route_served_ahead_of_the_router_answers_as_the_router_would(
    client: httpx.AsyncClient, owner, agent
):
    """Records skip the router's dependency solving: the credentials, the path and its errors
    are read as for any route."""
    url = f"/api/agents/{agent['id']}/performance"
    bearer = {"Authorization": f"Bearer {owner.headers['X-Api-Key']}"}

    by_bearer = await client.post(url, json={"latency_ms": 5}, headers=bearer)
    anonymous = await client.post("/api/agents/not-a-uuid/performance", json={"latency_ms": 5})
    bad_path = await client.post(
        "/api/agents/not-a-uuid/performance", json={"latency_ms": 5}, headers=owner.headers
    )
    unknown = await client.post(
        f"/api/agents/{uuid.uuid4()}/performance", json={"latency_ms": 5}, headers=owner.headers
    )
    other_method = await client.put(url, json={"latency_ms": 5}, headers=owner.headers)

    assert (by_bearer.status_code, by_bearer.json()) == (201, {"recorded": 1})
    assert anonymous.status_code == 401
    assert bad_path.status_code == 422
    assert bad_path.json()["detail"][0]["loc"] == ["path", "agent_id"]
    assert (unknown.status_code, unknown.json()["detail"]) == (404, "Agent not found")
    assert other_method.status_code == 405
