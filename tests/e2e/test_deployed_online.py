"""An online experiment through ``promptlooper serve``: registered by an admin, assigned and
counted for a browser, with bots turned away."""

from __future__ import annotations

from collections.abc import Callable

from tests.deployed import Deployed

BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0"}
EXPERIMENT = {
    "experiment_key": "checkout_button",
    "name": "Checkout button",
    "cookie_name": "exp_checkout_button",
    "eligible_routes": ["/checkout"],
    "variants": [
        {"variant_key": "control", "allocation": 50, "is_control": True},
        {"variant_key": "green", "allocation": 50},
    ],
}


def test_an_online_experiment_assigns_counts_and_reports(serve: Callable[..., Deployed]):
    server = serve()

    with server.client() as http:
        created = http.post("/api/admin/experiments", json=EXPERIMENT, headers=server.admin)
        assignment = http.get(
            "/api/experiments/checkout_button/assignment",
            params={"unit_id": "visitor-42", "path": "/checkout"},
            headers=BROWSER,
        )
        variant = assignment.json()["variant_key"]
        base = {"experiment_key": "checkout_button", "variant_key": variant, "path": "/checkout"}
        seen = http.post(
            "/api/experiments/impression",
            json={**base, "session_id": "visitor-42", "event_name": "impression"},
            headers=BROWSER,
        )
        bought = http.post(
            "/api/experiments/event",
            json={**base, "session_id": "visitor-42", "event_name": "conversion", "value": 49},
            headers=BROWSER,
        )
        crawled = http.post(
            "/api/experiments/impression",
            json={**base, "session_id": "crawler-1", "event_name": "impression"},
            headers={"User-Agent": "Googlebot/2.1 (+http://www.google.com/bot.html)"},
        )
        anonymous = http.get("/api/v1/experiments/results")
        results = http.get(
            "/api/v1/experiments/results",
            params={"experiment_key": "checkout_button"},
            headers=server.admin,
        )

    assert created.status_code == 201, created.text
    assert assignment.status_code == 200
    assert variant in ("control", "green")
    assert (seen.status_code, seen.json()) == (202, {"ok": True, "accepted": True})
    assert (bought.status_code, bought.json()) == (202, {"ok": True, "accepted": True})
    assert (crawled.status_code, crawled.json()) == (202, {"ok": True, "accepted": False})
    assert crawled.headers["X-Event-Rejected"] == "bot"
    assert anonymous.status_code == 401
    assert results.status_code == 200, results.text
    (report,) = results.json()
    counts = {v["variant_key"]: v for v in report["variants"]}
    assert counts[variant]["impressions"] == 1
    assert counts[variant]["conversions"] == 1
    assert counts[variant]["conversion_value_total"] == 49
    assert counts[variant]["conversion_rate"] == 1.0
    other = "green" if variant == "control" else "control"
    assert (counts[other]["impressions"], counts[other]["conversions"]) == (0, 0)
    assert report["health"]["bots_rejected"] == 1
