"""The registry and site settings: seed 004's scenarios and validation, on both databases."""

from __future__ import annotations

import httpx
import pytest

from tests.factories import make_actor
from tests.online.conftest import BROWSER, event

HOMEPAGE_PUT = {
    "cookie_name": "exp_homepage_hero",
    "name": "Homepage hero test",
    "description": "Updated from admin",
    "enabled": False,
    "eligible_routes": ["/", "/contact"],
    "variants": [
        {"variant_key": "control", "label": "Original", "allocation": 20, "is_control": True},
        {
            "variant_key": "tiny_gang_social_proof",
            "label": "Social proof",
            "allocation": 80,
            "is_control": False,
        },
    ],
}


async def test_list_experiments_returns_seeded_registry(client: httpx.AsyncClient, registry):
    response = await client.get("/api/experiments")

    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["experiment_key"] for item in body] == ["homepage_hero_test", "pricing_cta_test"]
    assert body[0]["cookie_name"] == "exp_homepage_hero"
    assert body[0]["variants"][0]["variant_key"] == "control"


async def test_admin_can_update_backend_managed_experiment_definition(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    response = await client.put(
        "/api/admin/experiments/homepage_hero_test", headers=bootstrap_headers, json=HOMEPAGE_PUT
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["enabled"] is False
    assert body["eligible_routes"] == ["/", "/contact"]
    assert body["variants"][1]["allocation"] == 80
    assert body["hash_seed"] == "homepage_hero_test"  # kept: units stay in their variants
    public = (await client.get("/api/experiments")).json()
    updated = next(item for item in public if item["experiment_key"] == "homepage_hero_test")
    assert updated["enabled"] is False
    assert updated["description"] == "Updated from admin"


async def test_a_started_experiment_cannot_go_back_to_draft(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    """A draft promises no unit was ever assigned: once running, only stopping is allowed."""
    url = "/api/admin/experiments/homepage_hero_test"
    refused = await client.put(
        url, headers=bootstrap_headers, json=HOMEPAGE_PUT | {"status": "draft"}
    )

    assert refused.status_code == 409
    assert "cannot go back to draft; stop it instead" in refused.json()["detail"]
    stopped = await client.put(
        url, headers=bootstrap_headers, json=HOMEPAGE_PUT | {"status": "stopped"}
    )
    assert stopped.status_code == 200, stopped.text
    again = await client.put(
        url, headers=bootstrap_headers, json=HOMEPAGE_PUT | {"status": "draft"}
    )
    assert again.status_code == 409
    assert (await client.get(url, headers=bootstrap_headers)).json()["status"] == "stopped"


async def test_an_admin_jwt_works_as_well_as_an_admin_key(
    client: httpx.AsyncClient, sessionmaker, registry
):
    admin = await make_actor(sessionmaker, "site-admin", is_admin=True)

    response = await client.put(
        "/api/admin/experiments/homepage_hero_test", headers=admin.headers, json=HOMEPAGE_PUT
    )

    assert response.status_code == 200


async def test_public_experiments_return_empty_when_globally_disabled(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    saved = await client.put(
        "/api/admin/settings",
        json={"site_name": "", "experiments_enabled": False},
        headers=bootstrap_headers,
    )
    assert saved.status_code == 200

    response = await client.get("/api/experiments")

    assert response.status_code == 200
    assert response.json() == []
    admin_list = await client.get("/api/admin/experiments", headers=bootstrap_headers)
    assert admin_list.status_code == 404
    settings = await client.get("/api/admin/settings", headers=bootstrap_headers)
    assert settings.json() == {"site_name": "", "experiments_enabled": False}


async def test_settings_change_only_the_fields_sent(client: httpx.AsyncClient, bootstrap_headers):
    named = await client.put(
        "/api/admin/settings", json={"site_name": "Pack Walks"}, headers=bootstrap_headers
    )
    assert named.json() == {"site_name": "Pack Walks", "experiments_enabled": True}

    switched = await client.put(
        "/api/admin/settings", json={"experiments_enabled": False}, headers=bootstrap_headers
    )

    assert switched.json() == {"site_name": "Pack Walks", "experiments_enabled": False}
    settings = await client.get("/api/admin/settings", headers=bootstrap_headers)
    assert settings.json() == {"site_name": "Pack Walks", "experiments_enabled": False}
    refused = await client.put(
        "/api/admin/settings", json={"site_name": None}, headers=bootstrap_headers
    )
    assert refused.status_code == 422


async def test_create_list_and_archive(client: httpx.AsyncClient, registry, bootstrap_headers):
    body = HOMEPAGE_PUT | {"experiment_key": "signup_copy", "cookie_name": "exp_signup"}

    created = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    assert created.status_code == 201, created.text
    assert created.json()["hash_seed"] == "signup_copy"
    again = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    assert again.status_code == 409

    archived = await client.post(
        "/api/admin/experiments/signup_copy/archive", headers=bootstrap_headers
    )
    assert archived.json()["status"] == "stopped"
    assert archived.json()["archived_at"] is not None
    keys = [e["experiment_key"] for e in (await client.get("/api/experiments")).json()]
    assert "signup_copy" not in keys
    listed = await client.get(
        "/api/admin/experiments", params={"include_archived": True}, headers=bootstrap_headers
    )
    assert "signup_copy" in [e["experiment_key"] for e in listed.json()["data"]]
    assert listed.json()["count"] == len(listed.json()["data"])


async def test_two_experiments_cannot_share_a_cookie(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    body = HOMEPAGE_PUT | {"experiment_key": "signup_copy", "cookie_name": "exp_pricing_cta"}

    created = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    assert created.status_code == 409
    assert "cookie_name 'exp_pricing_cta'" in created.json()["detail"]
    assert "'pricing_cta_test'" in created.json()["detail"]
    missing = await client.get("/api/admin/experiments/signup_copy", headers=bootstrap_headers)
    assert missing.status_code == 404

    replaced = await client.put(
        "/api/admin/experiments/homepage_hero_test",
        json=HOMEPAGE_PUT | {"cookie_name": "exp_pricing_cta"},
        headers=bootstrap_headers,
    )
    assert replaced.status_code == 409
    assert "cookie_name" in replaced.json()["detail"]

    # Browsers keep an archived experiment's cookie: its name stays taken.
    await client.post("/api/admin/experiments/pricing_cta_test/archive", headers=bootstrap_headers)
    again = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)
    assert again.status_code == 409


async def test_an_archived_experiment_cannot_be_set_running(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    key = "/api/admin/experiments/homepage_hero_test"
    await client.post(f"{key}/archive", headers=bootstrap_headers)

    revived = await client.put(
        key, json=HOMEPAGE_PUT | {"status": "running"}, headers=bootstrap_headers
    )
    assert revived.status_code == 409
    assert "archived" in revived.json()["detail"]
    assert (await client.get(key, headers=bootstrap_headers)).json()["status"] == "stopped"
    edited = await client.put(
        key, json=HOMEPAGE_PUT | {"status": "stopped"}, headers=bootstrap_headers
    )
    assert edited.status_code == 200, edited.text


def _renamed(treatment: str) -> dict:
    control, _ = HOMEPAGE_PUT["variants"]
    return HOMEPAGE_PUT | {"variants": [control, {"variant_key": treatment, "allocation": 80}]}


async def test_arms_keep_their_keys_once_an_experiment_has_started(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    key = "/api/admin/experiments/homepage_hero_test"

    running = await client.put(key, json=_renamed("social_proof"), headers=bootstrap_headers)
    assert running.status_code == 409
    assert "variants" in running.json()["detail"]
    assert "it is running" in running.json()["detail"]
    kept = (await client.get(key, headers=bootstrap_headers)).json()
    assert [v["variant_key"] for v in kept["variants"]] == ["control", "tiny_gang_social_proof"]

    # Stopped before any event: nothing to hide, the arms may still be renamed.
    await client.put(key, json=HOMEPAGE_PUT | {"status": "stopped"}, headers=bootstrap_headers)
    renamed = await client.put(
        key, json=_renamed("social_proof") | {"status": "stopped"}, headers=bootstrap_headers
    )
    assert renamed.status_code == 200, renamed.text

    back = _renamed("social_proof") | {"status": "running", "enabled": True}
    await client.put(key, json=back, headers=bootstrap_headers)
    sent = await client.post(
        "/api/experiments/event",
        json=event(variant_key="social_proof", event_name="conversion"),
        headers=BROWSER,
    )
    assert sent.json()["accepted"] is True
    await client.put(key, json=back | {"status": "stopped"}, headers=bootstrap_headers)
    stopped = await client.put(
        key, json=_renamed("proof") | {"status": "stopped"}, headers=bootstrap_headers
    )
    assert stopped.status_code == 409
    assert "it has recorded events" in stopped.json()["detail"]


async def test_put_takes_back_what_get_returned(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    key = "/api/admin/experiments/homepage_hero_test"
    current = (await client.get(key, headers=bootstrap_headers)).json()

    edited = await client.put(
        key, json=current | {"description": "Edited"}, headers=bootstrap_headers
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["description"] == "Edited"
    assert edited.json()["created_at"] == current["created_at"]

    await client.post(f"{key}/archive", headers=bootstrap_headers)
    archived = (await client.get(key, headers=bootstrap_headers)).json()
    again = await client.put(key, json=archived, headers=bootstrap_headers)
    assert again.status_code == 200, again.text
    assert again.json()["archived_at"] == archived["archived_at"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("experiment_key", "pricing_cta_test"),
        ("id", "00000000-0000-4000-8000-000000000000"),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("archived_at", "2020-01-01T00:00:00Z"),
    ],
)
async def test_put_refuses_a_changed_read_only_field(
    client: httpx.AsyncClient, registry, bootstrap_headers, field, value
):
    key = "/api/admin/experiments/homepage_hero_test"
    current = (await client.get(key, headers=bootstrap_headers)).json()

    response = await client.put(key, json=current | {field: value}, headers=bootstrap_headers)

    assert response.status_code == 422
    assert response.json()["detail"] == [
        {
            "loc": ["body", field],
            "msg": "read-only, and differs from the experiment's; leave it out",
            "type": "value_error",
        }
    ]
    assert (await client.get(key, headers=bootstrap_headers)).json() == current


async def test_control_is_kept_first(client: httpx.AsyncClient, registry, bootstrap_headers):
    variants = list(reversed(HOMEPAGE_PUT["variants"]))

    response = await client.put(
        "/api/admin/experiments/homepage_hero_test",
        json=HOMEPAGE_PUT | {"variants": variants},
        headers=bootstrap_headers,
    )

    assert [v["variant_key"] for v in response.json()["variants"]] == [
        "control",
        "tiny_gang_social_proof",
    ]


def _variants(*allocations_and_controls) -> list[dict]:
    return [
        {"variant_key": f"v{i}", "allocation": a, "is_control": c}
        for i, (a, c) in enumerate(allocations_and_controls)
    ]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"variants": _variants((50, True), (40, False))}, "allocations must sum to 100"),
        ({"variants": _variants((50, False), (50, False))}, "exactly one control"),
        ({"variants": _variants((50, True), (50, True))}, "exactly one control"),
        ({"variants": _variants((100, True))}, "at least 2 items"),
        (
            {
                "variants": [
                    {"variant_key": "a", "allocation": 50, "is_control": True},
                    {"variant_key": "a", "allocation": 50},
                ]
            },
            "used twice",
        ),
        (
            {
                "variants": [
                    {"variant_key": "Not OK", "allocation": 50, "is_control": True},
                    {"variant_key": "b", "allocation": 50},
                ]
            },
            "variant_key",
        ),
        ({"variants": _variants((100, True), (0, False))}, "greater than 0"),
        (
            {"variants": _variants((99.9999999, True), (0.0000001, False))},
            "more than 2 decimals",
        ),
        ({"eligible_routes": ["contact"]}, "must start with /"),
        ({"eligible_routes": ["/a*b"]}, "only a trailing /* is a pattern"),
        ({"coverage": 120}, "coverage"),
        ({"surprise": 1}, "surprise"),
    ],
)
async def test_bad_definitions_are_422_with_a_message(
    client: httpx.AsyncClient, registry, bootstrap_headers, changes, message
):
    response = await client.put(
        "/api/admin/experiments/homepage_hero_test",
        json=HOMEPAGE_PUT | changes,
        headers=bootstrap_headers,
    )

    assert response.status_code == 422
    assert message in response.text


async def test_an_allocation_with_too_many_decimals_is_shown_its_own_rounding(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    """The example fits the split that was meant, so following it gives one summing to 100."""
    response = await client.put(
        "/api/admin/experiments/homepage_hero_test",
        json=HOMEPAGE_PUT | {"variants": _variants((33.333, True), (66.667, False))},
        headers=bootstrap_headers,
    )

    assert response.status_code == 422
    said = {tuple(p["loc"]): p["msg"] for p in response.json()["detail"]}
    assert said == {
        ("body", "variants", 0, "allocation"): (
            "allocation 33.333 has more than 2 decimals; use e.g. 33.33"
        ),
        ("body", "variants", 1, "allocation"): (
            "allocation 66.667 has more than 2 decimals; use e.g. 66.67"
        ),
    }


async def test_a_variant_key_used_twice_is_located_at_its_second_use(
    client: httpx.AsyncClient, registry, bootstrap_headers
):
    """Numbered as sent (the control, moved first once valid, is here last)."""
    variants = [
        {"variant_key": "a", "allocation": 30},
        {"variant_key": "b", "allocation": 30},
        {"variant_key": "a", "allocation": 40, "is_control": True},
    ]
    response = await client.put(
        "/api/admin/experiments/homepage_hero_test",
        json=HOMEPAGE_PUT | {"variants": variants},
        headers=bootstrap_headers,
    )

    assert response.status_code == 422
    (problem,) = response.json()["detail"]
    assert problem["loc"] == ["body", "variants", 2, "variant_key"]
    assert problem["msg"] == "variants.2.variant_key: 'a' is used twice; give each arm its own key"


async def test_admin_routes_refuse_non_admins(client: httpx.AsyncClient, sessionmaker, registry):
    user = await make_actor(sessionmaker, "plain-user")

    for method, url in [
        ("GET", "/api/admin/experiments"),
        ("PUT", "/api/admin/experiments/homepage_hero_test"),
        ("GET", "/api/admin/settings"),
        ("GET", "/api/v1/experiments/results"),
    ]:
        response = await client.request(method, url, json=HOMEPAGE_PUT, headers=user.headers)
        assert response.status_code == 403, (method, url)
    unknown = await client.put(
        "/api/admin/experiments/nope",
        json=HOMEPAGE_PUT,
        headers={"X-Api-Key": "test-bootstrap-admin-key"},
    )
    assert unknown.status_code == 404


SLUG_WORDS = "must be lowercase letters and digits, words joined by - or _ (like checkout-button)"


async def test_a_bad_key_or_name_is_refused_in_words_at_each_field(
    client: httpx.AsyncClient, bootstrap_headers
):
    """Every slug (the key, arm keys, metric names) says what it must be, not its regex."""
    variants = HOMEPAGE_PUT["variants"]
    body = HOMEPAGE_PUT | {
        "experiment_key": "Homepage Hero",
        "primary_metric": "Sign-Up",
        "secondary_metrics": ["conversion", "a__b"],
        "guardrail_metrics": ["cost-"],
        "guardrail_thresholds": {"Cost": {"threshold": 0.2}},
        "variants": [variants[0] | {"variant_key": "control!"}, variants[1]],
    }

    response = await client.post("/api/admin/experiments", json=body, headers=bootstrap_headers)

    assert response.status_code == 422, response.text
    found = {tuple(p["loc"]): (p["msg"], p["type"]) for p in response.json()["detail"]}
    assert found == dict.fromkeys(
        [
            ("body", "experiment_key"),
            ("body", "primary_metric"),
            ("body", "secondary_metrics", 1),
            ("body", "guardrail_metrics", 0),
            ("body", "guardrail_thresholds", "Cost", "[key]"),
            ("body", "variants", 0, "variant_key"),
        ],
        (SLUG_WORDS, "string_pattern_mismatch"),
    )
