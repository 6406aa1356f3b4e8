"""The online experiments pages in headless Chromium against ``promptlooper serve`` as
deployed: an admin creates an experiment from the form, visitors are assigned and send their
events through the public API as the A/B script does, and the results page shows their
numbers, the sample-ratio-mismatch banner of a split whose treatment lost half its tracking,
and the chart drawn by uPlot; then the experiment is stopped from its page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import drop_database, fresh_database
from tests.deployed import Deployed, start_server
from tests.web.browsing import Walk
from tests.web.conftest import PASSWORD, USER_AGENT

VISITORS = 600
KEY = "browser_hero"


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployed]:
    """A server on a new SQLite database, with the admin ``root``."""
    url = asyncio.run(fresh_database("sqlite", tmp_path)).replace("+aiosqlite", "")
    server = start_server(url, tmp_path / "server")
    with server.client() as http:
        made = http.post(
            "/api/users",
            json={"username": "root", "password": PASSWORD, "is_admin": True},
            headers=server.admin,
        )
        assert made.status_code == 201, made.text
    yield server
    server.stop()
    print(f"--- log of {server.url} ---\n{server.log()}")
    asyncio.run(drop_database(url))


def _visit(base: str, treatment: str = "social") -> dict[str, list[int]]:
    """Each visitor asks for its variant and reports an impression, and one in five converts,
    as the A/B script would; the treatment's page lost every other impression (broken
    tracking). Returns the exposed and converting counts per variant."""
    seen: dict[str, list[int]] = {"control": [0, 0], treatment: [0, 0]}
    events = []
    with httpx.Client(base_url=base, headers={"user-agent": USER_AGENT}, timeout=30) as http:
        for index in range(VISITORS):
            unit = f"visitor-{index}"
            answer = http.get(f"/api/experiments/{KEY}/assignment", params={"unit_id": unit})
            variant = answer.json()["variant_key"]
            if variant == treatment and index % 2:
                continue  # the lost impression: nothing from this visitor is counted
            common = {"experiment_key": KEY, "variant_key": variant, "session_id": unit}
            events.append(common | {"event_name": "impression", "event_id": f"i-{unit}"})
            seen[variant][0] += 1
            if index % 5 == 0:
                events.append(
                    common | {"event_name": "conversion", "event_id": f"c-{unit}", "value": 20}
                )
                seen[variant][1] += 1
        for start in range(0, len(events), 500):
            stored = http.post(
                "/api/experiments/batch", json={"events": events[start : start + 500]}
            )
            assert stored.status_code == 202, stored.text
            assert stored.json()["rejected"] == 0, stored.text
    return seen


def _walk(driver: Any, base: str) -> dict[str, Any]:
    from selenium.webdriver.support.ui import Select, WebDriverWait

    walk = Walk(driver, base)
    walk.open("/ui/online")
    walk.fill({"username": "root", "password": PASSWORD})
    walk.click("Log in")
    assert "No online experiments yet" in walk.text()
    walk.click("New experiment")
    walk.fill(
        {
            "experiment_key": KEY,
            "name": "Browser hero",
            "cookie_name": "exp_browser_hero",
            "variants.1.variant_key": "social",
            "variants.1.label": "Social proof",
        }
    )
    Select(driver.find_element(walk.by.NAME, "status")).select_by_value("running")
    walk.click("Create experiment")
    created = walk.text()
    assert walk.path() == f"/ui/online/{KEY}"

    seen = _visit(base)
    walk.open(f"/ui/online/{KEY}")
    WebDriverWait(driver, 15).until(
        lambda d: len(d.find_elements(walk.by.CSS_SELECTOR, "figure.chart-box canvas")) == 2
    )
    results = walk.text()
    # The one day of traffic is drawn on that day, not on years (nor on two days).
    spans = driver.execute_script(
        "return Array.from(document.querySelectorAll('figure[data-chart]'))"
        ".map(function (f) { return f._plot.scales.x.max - f._plot.scales.x.min; });"
    )
    svgs = len(driver.find_elements(walk.by.CSS_SELECTOR, "svg.forest-plot"))
    walk.confirm("Stop", "Stop experiment")
    return {
        "created": created,
        "seen": seen,
        "results": results,
        "svgs": svgs,
        "spans": spans,
        "stopped": walk.text(),
    }


def test_an_admin_creates_an_experiment_and_reads_its_results(browser, deployed: Deployed):
    found = _walk(browser, deployed.url)
    assert "Experiment Browser hero created (running)." in found["created"]
    assert "No events yet" in found["created"]

    seen, results = found["seen"], found["results"]
    control, social = seen["control"], seen["social"]
    assert control[0] > 1.5 * social[0]  # the skew the page must catch
    assert "Sample-ratio mismatch: do not trust these results" in results
    assert f"the exposed sessions ({control[0]:,}, {social[0]:,}) do not match" in results
    assert results.index("Sample-ratio mismatch") < results.index("Variants")
    # Per variant: allocation, exposed sessions, impressions, clicks, starts, submits,
    # conversions, conversion rate, value per session.
    for label, key, (exposed, converting) in (
        ("Original", "control", control),
        ("Social proof", "social", social),
    ):
        row = (
            f"{label}{' (control)' if key == 'control' else ''} {key} 50.0 {exposed:,} {exposed:,} "
            f"0 0 0 {converting:,} {100 * converting / exposed:.2f} {20 * converting / exposed:.2f}"
        )
        assert row in results, (row, results)
    assert re.search(r"Social proof conversion [0-9.]+ % → [0-9.]+ % [▲▼]? ?[+-]", results)
    assert found["svgs"] == 2
    assert len(found["spans"]) == 2
    assert found["spans"] == [86400, 86400]
    assert "stopped: no unit is assigned" in found["stopped"]


def _overflow(driver: Any, css: str) -> list[str]:
    """The elements matching ``css`` that are not wholly inside the window, or whose text
    is wider than their own box (a value cut off inside its input)."""
    return driver.execute_script(
        "var w = window.innerWidth;"
        "return Array.from(document.querySelectorAll(arguments[0])).filter(function (e) {"
        "  var r = e.getBoundingClientRect();"
        "  return r.left < 0 || r.right > w || e.scrollWidth > e.clientWidth + 1;"
        "}).map(function (e) { return e.name || e.textContent.trim().slice(0, 40); });",
        css,
    )


def test_the_forms_and_results_fit_a_phone_and_a_desktop(browser, deployed: Deployed):
    """At 375 px the definition forms and the lifts stay on screen (the page never scrolls
    sideways); at 1280 px every column of the variants table and every variant key show."""
    social = {"variant_key": "tiny_gang_social_proof", "label": "Social proof", "allocation": 50}
    definition = {
        "experiment_key": KEY,
        "name": "Browser hero",
        "cookie_name": "exp_browser_hero",
        "variants": [
            {"variant_key": "control", "label": "Original", "allocation": 50, "is_control": True},
            social,
        ],
    }
    with deployed.client() as http:
        made = http.post("/api/admin/experiments", json=definition, headers=deployed.admin)
        assert made.status_code == 201, made.text
    _visit(deployed.url, treatment=social["variant_key"])
    walk = Walk(browser, deployed.url)
    walk.open("/ui/login")
    walk.fill({"username": "root", "password": PASSWORD})
    walk.click("Log in")

    browser.set_window_size(375, 800)
    assert browser.execute_script("return window.innerWidth") <= 400
    for page in ("/ui/online/new", f"/ui/online/{KEY}/edit", f"/ui/online/{KEY}"):
        walk.open(page)
        page_width = browser.execute_script("return document.scrollingElement.scrollWidth")
        assert page_width <= browser.execute_script("return window.innerWidth"), page
        assert _overflow(browser, "table.variant-rows input, table.forest td") == [], page
    assert "Social proof" in walk.text()  # the lifts were there to be measured

    browser.set_window_size(1280, 900)
    walk.open(f"/ui/online/{KEY}")
    assert _overflow(browser, "table.arms th, .table-wrap") == []
    walk.open(f"/ui/online/{KEY}/edit")
    assert _overflow(browser, "table.variant-rows input[type=text]") == []


def test_an_admin_creates_a_bandit_with_auto_stop_and_a_guardrail_in_the_form(
    browser, deployed: Deployed
):
    from selenium.webdriver.support.ui import Select

    cost = {"name": "cost-per-call", "source": "llm_call", "aggregation": "ratio",
            "denominator": "llm_call", "direction": "lower"}  # fmt: skip
    with deployed.client() as http:
        made = http.post("/api/admin/metrics", json=cost, headers=deployed.admin)
        assert made.status_code == 201, made.text
    walk = Walk(browser, deployed.url)
    walk.open("/ui/online/new")
    walk.fill({"username": "root", "password": PASSWORD})
    walk.click("Log in")
    walk.open("/ui/online/new")
    walk.fill(
        {
            "experiment_key": "answer_bandit",
            "name": "Answer bandit",
            "cookie_name": "exp_answer_bandit",
            "variants.1.variant_key": "verbose",
            "bandit.every_exposures": "500",
            "bandit.floor": "0.1",
            "guardrail_thresholds.cost-per-call.threshold": "-0.2",
        }
    )
    Select(browser.find_element(walk.by.NAME, "type")).select_by_value("bandit")
    walk.tick("guardrail.cost-per-call")
    walk.tick("auto_stop")
    invalid = browser.execute_script(
        "return Array.from(document.querySelectorAll('input:invalid')).map(e => e.name)"
    )
    assert invalid == [], invalid
    walk.click("Create experiment")
    refused = walk.text()
    assert "is better lower, so harm is a rise: give a positive threshold (e.g. 0.2)" in refused
    # What was typed stays: fix the sign only.
    walk.fill({"guardrail_thresholds.cost-per-call.threshold": "0.2"})
    walk.click("Create experiment")
    assert walk.path() == "/ui/online/answer_bandit", walk.text()
    assert "Experiment Answer bandit created" in walk.text()
    with deployed.client() as http:
        found = http.get("/api/admin/experiments/answer_bandit", headers=deployed.admin).json()
    assert (found["type"], found["auto_stop"]) == ("bandit", True)
    assert found["bandit"] == {"every_exposures": 500, "every_seconds": 3600.0, "floor": 0.1}
    assert found["guardrail_metrics"] == ["cost-per-call"]
    assert found["guardrail_thresholds"] == {
        "cost-per-call": {"threshold": 0.2, "scale": "relative"}
    }


_CHARTS = """
return Array.from(document.querySelectorAll('figure[data-chart]')).map(function (f) {
  var u = f._plot;
  return {
    spec: JSON.parse(document.getElementById(f.getAttribute('data-chart')).textContent),
    x: [u.scales.x.min, u.scales.x.max], y: [u.scales.y.min, u.scales.y.max],
    ticks: u.axes[0]._splits, labels: u.axes[0]._values,
    styles: u.series.slice(1).map(function (s) { return [s.width, (s.dash || []).join(' ')]; }),
    strokes: u.series.slice(1).map(function (s) { return s.stroke(u, 1); }),
    legend: Array.from(f.querySelectorAll('.u-legend tr')).map(function (r) {
      var cell = function (css) { return r.querySelector(css).textContent; };
      return cell('.u-label') + ': ' + cell('.u-value');
    })
  };
});
"""


def test_the_over_time_charts_fit_one_day_and_keep_equal_arms_apart(browser, deployed: Deployed):
    """One day of traffic is drawn as that day, named by its UTC date wherever the reader is,
    not on a second, made-up day; three arms with the same exposures are three lines a
    reader can tell apart, and the legend lists each with its value without a hover; names
    with markup and quotes stay text; a switch to dark mode redraws in dark colours."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    risky = 'Arm "B" <script>window.pwned = 1</script>'
    arms = [("control", "Original", 34, 5), ("b", risky, 33, 4), ("c", "Arm C", 33, 3)]
    definition = {
        "experiment_key": "chart_arms",
        "name": "Hero <img src=x onerror=\"window.pwned = 2\"> 'test'",
        "cookie_name": "exp_chart_arms",
        "status": "running",
        "variants": [
            {"variant_key": key, "label": label, "allocation": share, "is_control": not index}
            for index, (key, label, share, _) in enumerate(arms)
        ],
    }
    events = []
    for key, _, _, every in arms:
        for index in range(120):
            common = {
                "experiment_key": "chart_arms",
                "variant_key": key,
                "session_id": f"{key}-{index}",
            }
            events.append(common | {"event_name": "impression"})
            if index % every == 0:
                events.append(common | {"event_name": "conversion", "value": 10})
    with deployed.client(headers={"user-agent": USER_AGENT}) as http:
        made = http.post("/api/admin/experiments", json=definition, headers=deployed.admin)
        assert made.status_code == 201, made.text
        stored = http.post("/api/experiments/batch", json={"events": events})
        assert stored.json()["rejected"] == 0, stored.text

    # A reader in California: the server's UTC day is not their local day for 8 hours a day.
    browser.execute_cdp_cmd("Emulation.setTimezoneOverride", {"timezoneId": "America/Los_Angeles"})
    walk = Walk(browser, deployed.url)
    walk.open("/ui/login")
    walk.fill({"username": "root", "password": PASSWORD})
    walk.click("Log in")
    walk.open("/ui/online/chart_arms")
    WebDriverWait(browser, 15).until(
        lambda d: len(d.find_elements(walk.by.CSS_SELECTOR, "figure.chart-box canvas")) == 2
    )
    exposure, lift = browser.execute_script(_CHARTS)

    (day,) = exposure["spec"]["x"]
    date = datetime.fromtimestamp(day, UTC)
    for chart in (exposure, lift):
        assert chart["x"] == [day - 43200, day + 43200]  # the day, centred; no second day
        assert chart["ticks"] == [day]
        assert chart["labels"][0].split("\n")[0] == f"{date.month}/{date.day}", chart["labels"]
    sessions = [f"{label}: 120 sessions" for _, label, _, _ in arms]
    assert exposure["legend"] == [f"day (UTC): {date:%Y-%m-%d}", *sessions]
    assert len(set(map(tuple, exposure["styles"]))) == 3, exposure["styles"]
    assert exposure["styles"][1:] == lift["styles"]  # an arm looks the same in both charts
    assert lift["y"][0] <= 0 <= lift["y"][1]  # the lift's reference is on the chart
    assert lift["legend"][1:] == [f"{risky}: +25.0 %", "Arm C: +66.7 %"]

    # A hover shows the day under the cursor; leaving puts the last day back, not blanks.
    plot = browser.find_element(walk.by.CSS_SELECTOR, "figure[data-chart=exposure-chart] .u-over")
    ActionChains(browser).move_to_element(plot).perform()
    assert browser.execute_script(_CHARTS)[0]["legend"][1:] == sessions
    ActionChains(browser).move_to_element(browser.find_element(walk.by.TAG_NAME, "h1")).perform()
    assert browser.execute_script(_CHARTS)[0]["legend"][1:] == sessions

    assert browser.execute_script("return window.pwned === undefined")
    assert "Hero <img src=x onerror=\"window.pwned = 2\"> 'test'" in walk.text()

    light = exposure["strokes"]
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    WebDriverWait(browser, 5).until(lambda d: d.execute_script(_CHARTS)[0]["strokes"] != light)
    dark = browser.execute_script(
        "return getComputedStyle(document.documentElement).getPropertyValue('--accent').trim()"
    )
    assert browser.execute_script(_CHARTS)[0]["strokes"][1] == dark
