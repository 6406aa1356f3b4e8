"""The A/B script embedded in a page of another site, as the README shows it: a page served
from a second origin on 127.0.0.1 loads the script from ``promptlooper serve`` (run with
CORS_ORIGINS naming that origin), and in real headless Chromium the script assigns, sets its
cookie and records its impression."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tests.deployed import Deployed, ThreadedApp, wait_for
from tests.web.conftest import (
    USER_AGENT,
    browser,  # noqa: F401 (fixture)
)

EXPERIMENT = {
    "experiment_key": "landing_headline",
    "name": "Landing headline",
    "cookie_name": "exp_landing_headline",
    "eligible_routes": ["/landing"],
    "variants": [
        {"variant_key": "control", "allocation": 50, "is_control": True},
        {"variant_key": "bold", "allocation": 50},
    ],
}

PAGE = """<!doctype html>
<html><head>
<style>[data-experiment] {{ display: none; }}</style>
<script src="{server}/static/promptlooper-ab.js" defer></script>
</head><body>
<h1 data-experiment="landing_headline" data-variant="control">Walks your dog will love</h1>
<h1 data-experiment="landing_headline" data-variant="bold">Join 120 happy pups</h1>
<p id="assigned"></p>
<script>
  document.addEventListener("promptlooper:assigned", function (e) {{
    document.getElementById("assigned").textContent = JSON.stringify(e.detail);
  }});
</script>
</body></html>"""


def _shop(server: dict[str, str]) -> web.Application:
    """The other site: one page that embeds the script from ``server["url"]``."""

    async def landing(_request: web.Request) -> web.Response:
        return web.Response(text=PAGE.format(server=server["url"]), content_type="text/html")

    app = web.Application()
    app.router.add_get("/landing", landing)
    return app


def _visit(driver, url: str) -> tuple[str, dict[str, str]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.ID, "assigned").text.startswith("{")
    )
    assigned = driver.find_element(By.ID, "assigned").text
    return assigned, {c["name"]: c["value"] for c in driver.get_cookies()}


def test_the_script_works_from_a_page_on_another_origin(
    serve: Callable[..., Deployed],
    browser,  # noqa: F811
):
    server_url: dict[str, str] = {}
    with ThreadedApp(_shop(server_url)) as shop:
        server = serve(CORS_ORIGINS=shop.origin)
        server_url["url"] = server.url
        assert shop.origin != server.url
        with server.client() as http:
            created = http.post("/api/admin/experiments", json=EXPERIMENT, headers=server.admin)
            assert created.status_code == 201, created.text

            assigned, cookies = _visit(browser, f"{shop.origin}/landing")

            variant = cookies.get("exp_landing_headline")
            assert variant in ("control", "bold"), (assigned, cookies)
            assert f'"landing_headline":"{variant}"' in assigned
            expected = http.get(
                "/api/experiments/landing_headline/assignment",
                params={"unit_id": cookies["pl_sid"], "path": "/landing"},
            ).json()["variant_key"]
            assert variant == expected  # the browser hashed as the server does

            def impressions() -> dict[str, int] | None:
                results = http.get(
                    "/api/v1/experiments/results",
                    params={"experiment_key": "landing_headline"},
                    headers=server.admin,
                ).json()
                counts = {v["variant_key"]: v["impressions"] for v in results[0]["variants"]}
                return counts if counts[variant] else None

            counted = wait_for(impressions, timeout=15, what="the impression to be recorded")

    assert counted == {variant: 1, ("bold" if variant == "control" else "control"): 0}


WRITER = """<!doctype html>
<html><body><p id="sent"></p>
<script>
  const server = {server!r};
  function body(name, id) {{
    return JSON.stringify({{experiment_key: "landing_headline", variant_key: "bold",
      session_id: "intruder", event_name: name, event_id: id, value: 1000}});
  }}
  const simple = {{method: "POST", mode: "no-cors", headers: {{"Content-Type": "text/plain"}}}};
  Promise.all([
    fetch(server + "/api/experiments/impression", {{...simple, body: body("impression", "i1")}}),
    fetch(server + "/api/experiments/event", {{...simple, body: body("conversion", "c1")}}),
    fetch(server + "/api/experiments/event",
          {{...simple, keepalive: true, body: body("conversion", "c2")}}),
    fetch(server + "/api/experiments/batch",
          {{...simple, body: JSON.stringify({{events: [JSON.parse(body("conversion", "c3"))]}})}}),
  ]).then(() => {{
    navigator.sendBeacon(server + "/api/experiments/event", body("conversion", "c4"));
    document.getElementById("sent").textContent = "sent";
  }});
</script></body></html>"""


def test_a_page_on_a_refused_origin_cannot_write_events(
    serve: Callable[..., Deployed],
    browser,  # noqa: F811
):
    """CORS stops a page elsewhere from reading answers, not from sending a "simple" POST:
    ingestion itself refuses a page whose origin is not in CORS_ORIGINS, by every way a page
    can send (fetch with ``no-cors``, ``keepalive``, ``sendBeacon``), while a request with no
    ``Origin`` (a server-side SDK, curl) still writes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    server_url: dict[str, str] = {}

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=WRITER.format(server=server_url["url"]), content_type="text/html")

    site = web.Application()
    site.router.add_get("/write", page)
    with ThreadedApp(site) as refused, ThreadedApp(_shop(server_url)) as allowed:
        server = serve(CORS_ORIGINS=allowed.origin)
        server_url["url"] = server.url
        with server.client() as http:
            created = http.post("/api/admin/experiments", json=EXPERIMENT, headers=server.admin)
            assert created.status_code == 201, created.text

            browser.get(f"{refused.origin}/write")
            WebDriverWait(browser, 15).until(lambda d: d.find_element(By.ID, "sent").text)

            def health() -> dict | None:
                results = http.get(
                    "/api/v1/experiments/results",
                    params={"experiment_key": "landing_headline"},
                    headers=server.admin,
                ).json()[0]
                return results if results["health"]["rejected"].get("origin") == 5 else None

            results = wait_for(health, timeout=15, what="the refused origin's 5 events")
            bold = next(v for v in results["variants"] if v["variant_key"] == "bold")
            assert (bold["impressions"], bold["conversions"]) == (0, 0)

            event = {
                "experiment_key": "landing_headline",
                "variant_key": "bold",
                "session_id": "s1",
                "event_name": "impression",
            }
            agent = {"User-Agent": USER_AGENT}
            elsewhere = http.post(
                "/api/experiments/event",
                json=event,
                headers={**agent, "Origin": "http://evil.example"},
            )
            assert elsewhere.status_code == 202
            assert elsewhere.json()["accepted"] is False
            assert elsewhere.headers["X-Event-Rejected"] == "origin"
            for origin in (allowed.origin, server.url, None):
                headers = agent if origin is None else {**agent, "Origin": origin}
                answer = http.post("/api/experiments/event", json=event, headers=headers)
                assert answer.json()["accepted"] is True, (origin, answer.headers)
