"""The A/B script on pages of another site, in headless Chromium against ``promptlooper serve``:
what a visitor sees when the script cannot assign (the experiment archived, the page's origin
not allowed, the server down, the page off the experiment's routes), and the README's snippet
run as written."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from tests.deployed import Deployed, ThreadedApp, free_port
from tests.web.conftest import browser  # noqa: F401 (fixture)

README = Path(__file__).parents[2] / "README.md"
EXPERIMENTS = [
    {
        "experiment_key": "arch_test",
        "name": "Archived hero",
        "cookie_name": "exp_arch_test",
        "variants": [
            {"variant_key": "old", "allocation": 50, "is_control": True},
            {"variant_key": "new", "allocation": 50},
        ],
    },
    {
        "experiment_key": "first_test",
        "name": "Unmarked hero",
        "cookie_name": "exp_first_test",
        "eligible_routes": ["/elsewhere"],
        "variants": [
            {"variant_key": "plain", "allocation": 50, "is_control": True},
            {"variant_key": "fancy", "allocation": 50},
        ],
    },
]
# The control marked in the markup but written second; the other experiment's control
# unmarked and written second too: only the registry knows it. An experiment key the page
# wrote with quotes, which no registry lists, must not stop the script.
PAGE = """<!doctype html>
<html><head>
<style>[data-experiment] { display: none; }</style>
<script src="{server}/static/promptlooper-ab.js" defer></script>
</head><body>
<h1 data-experiment="arch_test" data-variant="new">NEW HERO</h1>
<h1 data-experiment="arch_test" data-variant="old" data-control>OLD HERO</h1>
<h2 data-experiment="first_test" data-variant="fancy">FANCY</h2>
<h2 data-experiment="first_test" data-variant="plain">PLAIN</h2>
<h2 data-experiment='a "quoted" key' data-variant="only">QUOTED</h2>
<p id="assigned"></p>
<script>
  document.addEventListener("promptlooper:assigned", function (e) {
    document.getElementById("assigned").textContent = JSON.stringify(e.detail);
  });
</script>
</body></html>"""


def _site(html: str, server: dict[str, str]) -> web.Application:
    """A site of one page, ``/``: ``html`` with ``{server}`` read as ``server["url"]``."""

    async def page(_request: web.Request) -> web.Response:
        return web.Response(text=html.replace("{server}", server["url"]), content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    return app


def _shown(driver, url: str) -> list[str]:
    """The headings a visitor sees once the script has assigned."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(url)
    driver.delete_all_cookies()
    driver.get(url)
    WebDriverWait(driver, 15).until(lambda d: d.find_element(By.ID, "assigned").text)
    shown = driver.find_elements(By.CSS_SELECTOR, "h1, h2")
    return [node.text for node in shown if node.is_displayed()]


def test_visitors_the_script_cannot_assign_see_the_control(
    serve: Callable[..., Deployed],
    browser,  # noqa: F811
):
    server_url: dict[str, str] = {}
    # The script loads, but its API (``data-api``) is a server that is down.
    dead = f'defer data-api="http://127.0.0.1:{free_port()}"'
    with (
        ThreadedApp(_site(PAGE, server_url)) as allowed,
        ThreadedApp(_site(PAGE, server_url)) as refused,
        ThreadedApp(_site(PAGE.replace("defer", dead), server_url)) as orphan,
    ):
        server = serve(CORS_ORIGINS=f"{allowed.origin},{orphan.origin}")
        server_url["url"] = server.url
        with server.client() as http:
            for experiment in EXPERIMENTS:
                created = http.post("/api/admin/experiments", json=experiment, headers=server.admin)
                assert created.status_code == 201, created.text
            archived = http.post("/api/admin/experiments/arch_test/archive", headers=server.admin)
            assert archived.status_code == 200, archived.text

        # Archived: the registry no longer lists it; the page is off first_test's routes, and
        # the registry names that one's control.
        assert _shown(browser, f"{allowed.origin}/") == ["OLD HERO", "PLAIN", "QUOTED"]
        # The registry unreadable: neither experiment is known, the markup decides.
        assert _shown(browser, f"{refused.origin}/") == ["OLD HERO", "FANCY", "QUOTED"]
        assert _shown(browser, f"{orphan.origin}/") == ["OLD HERO", "FANCY", "QUOTED"]


def _readme_snippet() -> str:
    """The README's HTML block for the browser, as written."""
    section = README.read_text().split("**In the browser.**", 1)[1]
    found = re.search(r"```html\n(.*?)```", section, re.S)
    assert found, "the README shows the browser snippet"
    return found[1]


def test_the_readme_snippet_runs_as_written(
    serve: Callable[..., Deployed],
    browser,  # noqa: F811
):
    snippet = _readme_snippet()
    assert "https://your-server/static/promptlooper-ab.js" in snippet
    # Errors and console output recorded for the test, ahead of the snippet.
    probe = (
        "<script>window.seen = {errors: [], logged: []};"
        "window.addEventListener('error', (e) => window.seen.errors.push(e.message));"
        "console.log = (...args) => window.seen.logged.push(JSON.stringify(args));</script>"
    )
    page = "<!doctype html><html><head>" + probe + "</head><body>" + snippet + "</body></html>"
    server_url: dict[str, str] = {}
    with ThreadedApp(_site(page.replace("https://your-server", "{server}"), server_url)) as site:
        server = serve(CORS_ORIGINS=site.origin)
        server_url["url"] = server.url
        with server.client() as http:
            created = http.post(
                "/api/admin/experiments",
                json={
                    "experiment_key": "homepage_hero_test",
                    "name": "Hero",
                    "cookie_name": "exp_homepage_hero",
                    "variants": [
                        {"variant_key": "control", "allocation": 50, "is_control": True},
                        {"variant_key": "tiny_gang_social_proof", "allocation": 50},
                    ],
                },
                headers=server.admin,
            )
            assert created.status_code == 201, created.text
        from selenium.webdriver.support.ui import WebDriverWait

        browser.get(f"{site.origin}/")
        seen = WebDriverWait(browser, 15).until(
            lambda d: (s := d.execute_script("return window.seen"))["logged"] and s
        )
    assert seen["errors"] == []
    (logged,) = seen["logged"]
    assigned = re.search(r'^\[\{"homepage_hero_test":"(\w+)"\}\]$', logged)
    assert assigned, logged
    assert assigned[1] in ("control", "tiny_gang_social_proof")
