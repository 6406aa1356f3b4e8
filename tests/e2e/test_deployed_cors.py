"""The A/B script embedded in a page of another site, as the README shows it: a page served
from a second origin on 127.0.0.1 loads the script from ``promptlooper serve`` (run with
CORS_ORIGINS naming that origin), and in real headless Chromium the script assigns, sets its
cookie and records its impression."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from tests.deployed import Deployed, ThreadedApp, wait_for
from tests.web.conftest import browser  # noqa: F401 (fixture)

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
