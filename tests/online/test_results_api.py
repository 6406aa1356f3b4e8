"""Results: seed 004's per-variant aggregation, exactly, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from promptlooper.online.models import ExperimentEvent
from tests.online.conftest import BROWSER, event


async def test_experiment_results_aggregate_by_variant(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    now = datetime.now(UTC)

    def stored(variant: str, session: str, kind: str, minutes: int, value=None):
        return ExperimentEvent(
            experiment_key="pricing_cta_test",
            variant_key=variant,
            session_id=session,
            path="/our-pricing",
            event_type=kind,
            value=value,
            created_at=now - timedelta(minutes=minutes),
        )

    async with sessionmaker() as session:
        session.add_all(
            [
                stored("control", "session-1", "impression", 5),
                stored("control", "session-1", "cta_click", 4),
                stored("control", "session-1", "conversion", 3, 1.0),
                stored("meet_greet_emphasis", "session-2", "impression", 2),
                stored("meet_greet_emphasis", "session-3", "impression", 1),
            ]
        )
        await session.commit()

    response = await client.get(
        "/api/v1/experiments/results?experiment_key=pricing_cta_test", headers=bootstrap_headers
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body) == 1
    assert body[0]["experiment_key"] == "pricing_cta_test"
    assert body[0]["variants"][0] == {
        "variant_key": "control",
        "impressions": 1,
        "cta_clicks": 1,
        "form_starts": 0,
        "form_submits": 0,
        "conversions": 1,
        "unique_sessions": 1,
        "conversion_rate": 1.0,
        "conversion_value_total": 1.0,
    }
    treatment = body[0]["variants"][1]
    assert treatment["variant_key"] == "meet_greet_emphasis"
    assert (treatment["impressions"], treatment["unique_sessions"]) == (2, 2)
    assert treatment["conversion_rate"] == 0.0


async def test_ingested_events_show_up_in_results(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    sessions = {"a": ["impression", "form_start", "form_submit", "conversion"], "b": ["impression"]}
    for session_id, kinds in sessions.items():
        for kind in kinds:
            body = event(session_id=session_id, event_name=kind)
            if kind == "conversion":
                body["value"] = 30.0
            await client.post("/api/experiments/event", json=body, headers=BROWSER)
    # a converting session that never saw the variant is not an exposed conversion
    await client.post(
        "/api/experiments/event",
        json=event(session_id="c", event_name="conversion", value=5.0),
        headers=BROWSER,
    )

    response = await client.get("/api/v1/experiments/results", headers=bootstrap_headers)

    by_key = {r["experiment_key"]: r for r in response.json()}
    assert set(by_key) == {"homepage_hero_test", "pricing_cta_test"}
    control = by_key["homepage_hero_test"]["variants"][0]
    assert control["impressions"] == 2
    assert control["form_starts"] == control["form_submits"] == 1
    assert control["conversions"] == 2
    assert control["unique_sessions"] == 3
    assert control["conversion_rate"] == 0.5  # 1 of the 2 exposed sessions converted
    assert control["conversion_value_total"] == 35.0
    empty = by_key["pricing_cta_test"]["variants"][1]
    assert empty["impressions"] == 0
    assert empty["conversion_rate"] == 0.0


async def test_results_for_an_unknown_experiment_are_404(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    response = await client.get(
        "/api/v1/experiments/results", params={"experiment_key": "nope"}, headers=bootstrap_headers
    )

    assert response.status_code == 404
