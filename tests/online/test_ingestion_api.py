"""Ingestion: seed 004's scenarios, rejection reasons, idempotency and the batch endpoint."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy import func, select

from promptlooper.online.models import ExperimentEvent
from tests.online.conftest import BROWSER, event

JSON_BODY = {"Content-Type": "application/json"}


async def _stored(sessionmaker) -> list[ExperimentEvent]:
    async with sessionmaker() as session:
        return list(await session.scalars(select(ExperimentEvent).order_by(ExperimentEvent.id)))


async def test_ingest_experiment_event_persists_event(
    client: httpx.AsyncClient, sessionmaker, registry
):
    body = event(metadata={"element": "Explore Pack Walks", "slot": "primary"})

    response = await client.post("/api/experiments/event", json=body, headers=BROWSER)

    assert response.status_code == 202, response.text
    assert response.json() == {"ok": True, "accepted": True}
    (stored,) = await _stored(sessionmaker)
    assert stored.experiment_key == "homepage_hero_test"
    assert stored.variant_key == "control"
    assert stored.event_type == "cta_click"
    assert stored.metadata_["element"] == "Explore Pack Walks"


@pytest.mark.parametrize(
    "user_agent",
    [
        "Googlebot/2.1",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "python-requests/2.32",
        "",
    ],
)
async def test_ingest_experiment_event_filters_bots(
    client: httpx.AsyncClient, sessionmaker, registry, user_agent
):
    response = await client.post(
        "/api/experiments/impression",
        json=event(event_name="impression"),
        headers={"user-agent": user_agent},
    )

    assert response.status_code == 202, response.text
    assert response.json() == {"ok": True, "accepted": False}
    assert response.headers["X-Event-Rejected"] == "bot"
    assert await _stored(sessionmaker) == []


async def test_experiment_ingest_is_ignored_when_globally_disabled(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    await client.put(
        "/api/admin/settings",
        json={"site_name": "", "experiments_enabled": False},
        headers=bootstrap_headers,
    )

    response = await client.post("/api/experiments/event", json=event(), headers=BROWSER)

    assert response.status_code == 202
    assert response.json() == {"ok": True, "accepted": False}
    assert response.headers["X-Event-Rejected"] == "experiments_disabled"
    assert await _stored(sessionmaker) == []


def _future() -> str:
    return (datetime.now(UTC) + timedelta(hours=2)).isoformat()


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"experiment_key": "nope"}, "unknown_experiment"),
        ({"variant_key": "nope"}, "unknown_variant"),
        ({"event_name": "scroll"}, "unknown_event"),
        ({"timestamp": "FUTURE"}, "future_timestamp"),
        ({"timestamp": "2020-01-01T00:00:00+00:00"}, "stale_timestamp"),
        ({"metadata": {"blob": "x" * 5000}}, "metadata_too_large"),
    ],
)
async def test_unacceptable_events_store_nothing_and_say_why(
    client: httpx.AsyncClient, sessionmaker, registry, changes, reason
):
    if changes.get("timestamp") == "FUTURE":
        changes = {"timestamp": _future()}

    response = await client.post("/api/experiments/event", json=event(**changes), headers=BROWSER)

    assert response.status_code == 202
    assert response.json() == {"ok": True, "accepted": False}
    assert response.headers["X-Event-Rejected"] == reason
    assert await _stored(sessionmaker) == []


async def test_a_stopped_experiment_accepts_nothing(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    await client.post(
        "/api/admin/experiments/homepage_hero_test/archive", headers=bootstrap_headers
    )

    response = await client.post("/api/experiments/event", json=event(), headers=BROWSER)

    assert response.headers["X-Event-Rejected"] == "experiment_inactive"


@pytest.mark.parametrize(
    "body",
    [
        {"variant_key": "control"},
        event(session_id=""),
        event(timestamp="yesterday"),
        event(value="a lot"),
    ],
)
async def test_malformed_bodies_are_422(client: httpx.AsyncClient, registry, body):
    response = await client.post("/api/experiments/event", json=body, headers=BROWSER)

    assert response.status_code == 422


@pytest.mark.parametrize("path", ["event", "impression", "batch"])
async def test_bodies_that_are_not_json_are_422_naming_the_body(
    client: httpx.AsyncClient, sessionmaker, registry, path
):
    response = await client.post(
        f"/api/experiments/{path}", content=b'{"experiment_key": ', headers=BROWSER
    )

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"][0] == "body"
    assert problem["type"] == "json_invalid"
    assert await _stored(sessionmaker) == []


async def test_a_field_error_names_the_field(client: httpx.AsyncClient, registry):
    response = await client.post(
        "/api/experiments/batch", json={"events": [event(), event(value="a lot")]}, headers=BROWSER
    )

    assert response.status_code == 422
    assert [p["loc"] for p in response.json()["detail"]] == [["body", "events", 1, "value"]]


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e400", "1.7e308", "-1e16"])
async def test_a_value_that_is_not_a_finite_number_within_1e15_is_422(
    client: httpx.AsyncClient, sessionmaker, registry, number
):
    body = json.dumps(event(event_name="conversion", value=12345.5)).replace("12345.5", number)

    response = await client.post(
        "/api/experiments/event", content=body, headers=BROWSER | JSON_BODY
    )

    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["body", "value"]
    assert await _stored(sessionmaker) == []


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ({"session_id": "s\x001"}, ["session_id"]),
        ({"metadata": {"note": "a\x00b"}}, ["metadata", "note"]),
        ({"metadata": {"list": ["ok", "\x00"]}}, ["metadata", "list", 1]),
        ({"metadata": {"k\x00": 1}}, ["metadata", "k\x00"]),
    ],
)
async def test_text_with_a_nul_character_is_422_and_nothing_of_the_batch_is_stored(
    client: httpx.AsyncClient, sessionmaker, registry, bad, where
):
    """PostgreSQL cannot store NUL; it is refused on SQLite too, so both behave alike."""
    events = [event(event_id="fine"), event(event_id="bad", **bad)]

    response = await client.post("/api/experiments/batch", json={"events": events}, headers=BROWSER)

    assert response.status_code == 422, response.text
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "events", 1, *where]
    assert "NUL" in problem["msg"]
    assert await _stored(sessionmaker) == []


async def test_a_backslash_before_u0000_is_ordinary_text(
    client: httpx.AsyncClient, sessionmaker, registry
):
    path = "C:\\u0000\\file"  # a backslash, then the letters u0000: no NUL character

    response = await client.post("/api/experiments/event", json=event(path=path), headers=BROWSER)

    assert response.json() == {"ok": True, "accepted": True}
    assert [e.path for e in await _stored(sessionmaker)] == [path]


async def test_the_api_documents_the_ingestion_bodies(app):
    paths = app.openapi()["paths"]

    batch = paths["/api/experiments/batch"]["post"]["requestBody"]["content"]["application/json"]
    item = batch["schema"]["properties"]["events"]["items"]
    assert "experiment_key" in item["properties"]
    assert "202" in paths["/api/experiments/event"]["post"]["responses"]


async def test_a_retried_event_id_is_stored_once(client: httpx.AsyncClient, sessionmaker, registry):
    body = event(event_id="evt-0001")

    first = await client.post("/api/experiments/event", json=body, headers=BROWSER)
    retry = await client.post("/api/experiments/event", json=body, headers=BROWSER)

    assert first.json() == retry.json() == {"ok": True, "accepted": True}
    assert len(await _stored(sessionmaker)) == 1
    other = await client.post(
        "/api/experiments/event", json=event(event_id="evt-0002"), headers=BROWSER
    )
    assert other.json()["accepted"] is True
    assert len(await _stored(sessionmaker)) == 2


async def test_batch_gives_a_verdict_per_event_and_stores_the_accepted(
    client: httpx.AsyncClient, sessionmaker, registry
):
    events = [
        event(event_name="impression", event_id="b-1"),
        event(event_name="impression", event_id="b-1"),  # a duplicate in the same batch
        event(variant_key="ghost"),
        event(event_name="conversion", value=12.5, event_id="b-2"),
    ]

    response = await client.post("/api/experiments/batch", json={"events": events}, headers=BROWSER)

    assert response.status_code == 202, response.text
    body = response.json()
    assert [r["accepted"] for r in body["results"]] == [True, True, False, True]
    assert body["results"][2]["reason"] == "unknown_variant"
    assert (body["accepted"], body["rejected"]) == (3, 1)
    stored = await _stored(sessionmaker)
    assert [e.event_type for e in stored] == ["impression", "conversion"]
    assert stored[1].value == 12.5


async def test_batches_are_limited_to_1000_events(client: httpx.AsyncClient, registry):
    response = await client.post(
        "/api/experiments/batch", json={"events": [event()] * 1001}, headers=BROWSER
    )

    assert response.status_code == 422


async def test_rejections_are_counted_by_reason_for_the_results(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    await client.post("/api/experiments/event", json=event(), headers={"user-agent": "Googlebot"})
    await client.post("/api/experiments/event", json=event(), headers={"user-agent": "curl/8"})
    await client.post("/api/experiments/event", json=event(variant_key="ghost"), headers=BROWSER)

    response = await client.get(
        "/api/v1/experiments/results",
        params={"experiment_key": "homepage_hero_test"},
        headers=bootstrap_headers,
    )

    assert response.json()[0]["health"]["rejected"] == {"bot": 2, "unknown_variant": 1}
    async with sessionmaker() as session:
        assert await session.scalar(select(func.count()).select_from(ExperimentEvent)) == 0


async def test_concurrent_events_are_group_committed_once_each(
    client: httpx.AsyncClient, sessionmaker, registry
):
    bodies = [event(event_id=f"c-{i % 150}", session_id=f"s-{i}") for i in range(200)]

    answers = await asyncio.gather(
        *(client.post("/api/experiments/event", json=b, headers=BROWSER) for b in bodies)
    )

    assert {a.status_code for a in answers} == {202}
    assert all(a.json()["accepted"] for a in answers)
    stored = await _stored(sessionmaker)
    assert len(stored) == 150  # 50 retries of an event_id stored nothing new
    assert len({e.event_id for e in stored}) == 150


async def test_overlapping_batches_written_side_by_side_count_each_event_once(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    def batch(start: int) -> dict:  # ids overlap with the next batch's: retries racing
        return {
            "events": [
                event(
                    event_id=f"o-{i}",
                    session_id=f"s-{i % 40}",
                    event_name="impression" if i % 2 else "conversion",
                )
                for i in range(start, start + 60)
            ]
        }

    answers = await asyncio.gather(
        *(
            client.post("/api/experiments/batch", json=batch(30 * n), headers=BROWSER)
            for n in range(8)
        )
    )
    results = await client.get(
        "/api/v1/experiments/results?experiment_key=homepage_hero_test", headers=bootstrap_headers
    )

    assert {a.status_code for a in answers} == {202}
    stored = await _stored(sessionmaker)
    assert sorted(e.event_id for e in stored) == sorted(f"o-{i}" for i in range(270))
    control = results.json()[0]["variants"][0]
    assert (control["impressions"], control["conversions"]) == (135, 135)
    assert control["unique_sessions"] == 40


async def test_an_event_arriving_as_the_last_writer_finishes_is_still_written(
    app, client: httpx.AsyncClient, sessionmaker, registry
):
    finished = asyncio.ensure_future(asyncio.sleep(0))
    await finished
    app.state.intake._log._writers = {finished}  # done, not yet forgotten: the moment of the race

    response = await asyncio.wait_for(
        client.post("/api/experiments/event", json=event(event_id="late"), headers=BROWSER), 10
    )

    assert response.json() == {"ok": True, "accepted": True}
    assert [e.event_id for e in await _stored(sessionmaker)] == ["late"]


async def test_another_process_registry_change_shows_within_the_ttl(
    app, client: httpx.AsyncClient, sessionmaker, registry
):
    from promptlooper.online import service

    first = await client.post("/api/experiments/event", json=event(), headers=BROWSER)
    assert first.json()["accepted"] is True
    async with sessionmaker() as session:  # as the CLI would, bypassing this app
        await service.set_status(session, "homepage_hero_test", "stopped")
        await session.commit()

    cached = await client.post("/api/experiments/event", json=event(), headers=BROWSER)
    app.state.intake._ttl = 0
    fresh = await client.post("/api/experiments/event", json=event(), headers=BROWSER)

    assert cached.json()["accepted"] is True  # inside the TTL the snapshot still holds
    assert fresh.headers["X-Event-Rejected"] == "experiment_inactive"


async def test_a_failed_write_fails_its_requests_and_the_next_ones_are_stored(
    client: httpx.AsyncClient, sessionmaker, registry, monkeypatch
):
    from promptlooper.online import tallies

    record = tallies.record

    async def broken(session, rows, tracked, windows):
        raise RuntimeError("the disk is full")

    monkeypatch.setattr(tallies, "record", broken)
    with pytest.raises(RuntimeError, match="disk is full"):
        await client.post("/api/experiments/event", json=event(event_id="a"), headers=BROWSER)
    monkeypatch.setattr(tallies, "record", record)

    response = await client.post(
        "/api/experiments/event", json=event(event_id="b"), headers=BROWSER
    )

    assert response.json() == {"ok": True, "accepted": True}
    assert [e.event_id for e in await _stored(sessionmaker)] == ["b"]


@pytest.mark.parametrize("name", ["conversion", "cta_click", "made_up"])
async def test_the_impression_route_refuses_another_event_name(
    client: httpx.AsyncClient, sessionmaker, registry, name
):
    response = await client.post(
        "/api/experiments/impression", json=event(event_name=name), headers=BROWSER
    )

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "event_name"]
    assert "impression" in problem["msg"]
    assert await _stored(sessionmaker) == []


async def test_the_impression_route_records_an_impression_named_or_not(
    client: httpx.AsyncClient, sessionmaker, registry
):
    unnamed = event(event_id="i-1")
    del unnamed["event_name"]
    for body in (unnamed, event(event_name="impression", event_id="i-2")):
        response = await client.post("/api/experiments/impression", json=body, headers=BROWSER)
        assert response.json() == {"ok": True, "accepted": True}

    assert [e.event_type for e in await _stored(sessionmaker)] == ["impression", "impression"]


@pytest.mark.parametrize(
    ("path", "body", "where"),
    [
        ("event", event(amount=49), ["body", "amount"]),
        ("impression", event(event_name="impression", referrer="/"), ["body", "referrer"]),
        ("batch", {"events": [event(), event(valeu=3)]}, ["body", "events", 1, "valeu"]),
        ("batch", {"events": [event()], "flush": True}, ["body", "flush"]),
    ],
)
async def test_an_unknown_field_is_422_naming_it_and_nothing_is_stored(
    client: httpx.AsyncClient, sessionmaker, registry, path, body, where
):
    response = await client.post(f"/api/experiments/{path}", json=body, headers=BROWSER)

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == where
    assert problem["type"] == "extra_forbidden"
    assert await _stored(sessionmaker) == []


async def test_conversion_value_is_accepted_as_the_value(
    client: httpx.AsyncClient, sessionmaker, registry
):
    body = event(event_name="conversion", conversion_value=49.5)

    response = await client.post("/api/experiments/event", json=body, headers=BROWSER)

    assert response.json() == {"ok": True, "accepted": True}
    (stored,) = await _stored(sessionmaker)
    assert stored.value == 49.5
    both = await client.post(
        "/api/experiments/event", json=body | {"value": 1, "event_id": "x"}, headers=BROWSER
    )
    assert both.status_code == 422
    assert both.json()["detail"][0]["loc"] == ["body", "conversion_value"]
