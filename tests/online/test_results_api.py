"""Results: seed 004's per-variant aggregation, exactly, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest

from promptlooper.online import stats
from tests.online.conftest import BROWSER, event, store


async def test_experiment_results_aggregate_by_variant(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    now = datetime.now(UTC)

    def stored(variant: str, session: str, kind: str, minutes: int, value=None) -> dict:
        return {
            "experiment_key": "pricing_cta_test",
            "variant_key": variant,
            "session_id": session,
            "path": "/our-pricing",
            "event_type": kind,
            "value": value,
            "created_at": now - timedelta(minutes=minutes),
        }

    await store(
        sessionmaker,
        [
            stored("control", "session-1", "impression", 5),
            stored("control", "session-1", "cta_click", 4),
            stored("control", "session-1", "conversion", 3, 1.0),
            stored("meet_greet_emphasis", "session-2", "impression", 2),
            stored("meet_greet_emphasis", "session-3", "impression", 1),
        ],
    )

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


async def test_value_per_session_counts_conversion_values_only(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    # A value on another event (a cost, a score) is not conversion value.
    for session_id in ("a", "b"):
        for kind, value in (("impression", None), ("cta_click", 7.0), ("form_start", 2.0)):
            body = event(session_id=session_id, event_name=kind, value=value)
            await client.post("/api/experiments/event", json=body, headers=BROWSER)
    await client.post(
        "/api/experiments/event",
        json=event(session_id="a", event_name="conversion", value=30.0),
        headers=BROWSER,
    )

    response = await client.get(
        "/api/v1/experiments/results",
        params={"experiment_key": "homepage_hero_test"},
        headers=bootstrap_headers,
    )

    control, treatment = response.json()[0]["variants"]
    assert control["conversion_value_total"] == 30.0
    assert treatment["stats"]["value_per_session"]["control_mean"] == 15.0


async def test_results_for_an_unknown_experiment_are_404(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    response = await client.get(
        "/api/v1/experiments/results", params={"experiment_key": "nope"}, headers=bootstrap_headers
    )

    assert response.status_code == 404


async def _exposures(sessionmaker, key: str, arms: dict[str, tuple[int, int]]) -> None:
    """For each arm, ``exposed`` sessions with an impression, ``converting`` of them with a
    conversion worth 10."""
    rows = []
    for variant, (exposed, converting) in arms.items():
        for i in range(exposed):
            sid = f"{variant}-{i}"
            rows.append({"experiment_key": key, "variant_key": variant, "session_id": sid,
                         "event_type": "impression"})  # fmt: skip
            if i < converting:
                rows.append({"experiment_key": key, "variant_key": variant, "session_id": sid,
                             "event_type": "conversion", "value": 10.0})  # fmt: skip
    await store(sessionmaker, rows)


async def test_treatments_carry_stats_against_control_and_health(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    await _exposures(
        sessionmaker,
        "pricing_cta_test",
        {"control": (400, 40), "meet_greet_emphasis": (420, 70)},
    )

    response = await client.get(
        "/api/v1/experiments/results",
        params={"experiment_key": "pricing_cta_test"},
        headers=bootstrap_headers,
    )

    (result,) = response.json()
    control, treatment = result["variants"]
    assert "stats" not in control
    conversion = treatment["stats"]["conversion_rate"]
    expected = stats.compare(stats.Moments.binary(400, 40), stats.Moments.binary(420, 70))
    assert conversion["relative_lift"] == pytest.approx(70 / 420 / 0.1 - 1)
    assert conversion["frequentist"]["p_value"] == pytest.approx(expected["frequentist"]["p_value"])
    assert conversion["frequentist"]["ci"] == pytest.approx(expected["frequentist"]["ci"])
    assert conversion["bayesian"]["chance_to_beat_control"] == pytest.approx(
        expected["bayesian"]["chance_to_beat_control"]
    )
    assert conversion["sequential"]["p_value"] >= conversion["frequentist"]["p_value"]
    assert "p_value_adjusted" in conversion["frequentist"]  # two metrics were tested
    assert result["multiplicity"] == {"tests": 2, "comparisons": 2, "correction": "holm"}
    value = treatment["stats"]["value_per_session"]
    assert value["treatment_mean"] == pytest.approx(70 * 10 / 420)
    health = result["health"]
    assert health["srm_p_value"] == pytest.approx(stats.srm_p_value([400, 420], [50, 50]))
    assert health["srm_mismatch"] is False
    assert health["enough_data"] is True
    assert health["multiple_exposure_rate"] == 0.0


async def test_health_flags_sample_ratio_mismatch_and_multiple_exposure(
    client: httpx.AsyncClient, sessionmaker, registry, bootstrap_headers
):
    await _exposures(
        sessionmaker,
        "homepage_hero_test",
        {"control": (300, 30), "tiny_gang_social_proof": (90, 9)},
    )
    await client.post(
        "/api/experiments/impression",
        json=event(
            session_id="control-1", variant_key="tiny_gang_social_proof", event_name="impression"
        ),
        headers=BROWSER,
    )

    response = await client.get(
        "/api/v1/experiments/results",
        params={"experiment_key": "homepage_hero_test"},
        headers=bootstrap_headers,
    )

    health = response.json()[0]["health"]
    assert health["srm_mismatch"] is True
    assert health["enough_data"] is False  # 91 exposed sessions in the treatment
    assert health["multiple_exposure_rate"] == pytest.approx(1 / 390)
