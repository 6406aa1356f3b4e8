"""The browser script in real headless Chromium: assignment, cookie, events, results."""

from __future__ import annotations

import asyncio
import time

import httpx

from tests.conftest import BOOTSTRAP_KEY
from tests.online.conftest import registry  # noqa: F401 (fixture)

ADMIN = {"X-Api-Key": BOOTSTRAP_KEY}


def _results(base: str, key: str = "homepage_hero_test") -> dict:
    response = httpx.get(
        f"{base}/api/v1/experiments/results",
        params={"experiment_key": key},
        headers=ADMIN,
    )
    return {v["variant_key"]: v for v in response.json()[0]["variants"]}


def _wait_for(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _scenario(driver, base: str) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/ab-demo")
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.ID, "assigned").text.startswith("{")
    )
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    shown = driver.find_elements(By.CSS_SELECTOR, "[data-experiment-shown]")
    hidden = driver.find_elements(By.CSS_SELECTOR, "[data-experiment]")
    variants = [s.get_attribute("data-variant") for s in shown if s.is_displayed()]

    driver.find_element(By.ID, "cta").click()
    driver.find_element(By.ID, "email").send_keys("owner@example.com")
    driver.find_element(By.ID, "submit").click()
    WebDriverWait(driver, 5).until(
        expected_conditions.invisibility_of_element_located((By.ID, "signup"))
    )
    driver.find_element(By.ID, "book").click()

    variant = cookies.get("exp_homepage_hero")
    counted = _wait_for(
        lambda: (r := _results(base)[variant])["conversions"] == 1 and r["form_submits"] == 1
    )
    driver.refresh()  # a returning visitor: same variant, no second impression
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.ID, "assigned").text.startswith("{")
    )
    again = {c["name"]: c["value"] for c in driver.get_cookies()}["exp_homepage_hero"]
    time.sleep(0.5)
    server = httpx.get(
        f"{base}/api/experiments/homepage_hero_test/assignment",
        params={"unit_id": cookies.get("pl_sid"), "path": "/ab-demo"},
    ).json()
    return {
        "server_variant": server["variant_key"],
        "cookies": cookies,
        "variants": variants,
        "hidden": len(hidden),
        "counted": counted,
        "again": again,
        "results": _results(base),
    }


async def test_the_demo_page_assigns_sets_the_cookie_and_reports_events(
    browser,
    live_url: str,
    registry,  # noqa: F811
):
    seen = await asyncio.to_thread(_scenario, browser, live_url)

    variant = seen["cookies"]["exp_homepage_hero"]
    assert variant == seen["server_variant"]  # the browser hashes as the server does
    assert seen["variants"] == [variant]  # exactly the assigned hero is on the page
    assert seen["hidden"] == 0
    assert seen["counted"]
    assert seen["again"] == variant
    mine = seen["results"][variant]
    assert mine["impressions"] == 1  # the reload's impression was a retry of the same id
    assert (mine["cta_clicks"], mine["form_starts"], mine["form_submits"]) == (1, 1, 1)
    assert mine["conversions"] == 1
    assert mine["conversion_value_total"] == 49.0
    assert mine["conversion_rate"] == 1.0
    assert mine["unique_sessions"] == 1


def _pricing_scenario(driver, base: str) -> dict:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/our-pricing")
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.ID, "assigned").text.startswith("{")
    )
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    shown = driver.find_elements(By.CSS_SELECTOR, "[data-experiment-shown]")
    driver.find_element(By.ID, "book").click()
    variant = cookies.get("exp_pricing_cta")
    counted = _wait_for(lambda: _results(base, "pricing_cta_test")[variant]["conversions"] == 1)
    server = httpx.get(
        f"{base}/api/experiments/pricing_cta_test/assignment",
        params={"unit_id": cookies.get("pl_sid"), "path": "/our-pricing"},
    ).json()
    return {
        "variant": variant,
        "server_variant": server["variant_key"],
        "shown": [s.get_attribute("data-variant") for s in shown if s.is_displayed()],
        "counted": counted,
        "results": _results(base, "pricing_cta_test"),
    }


async def test_the_pricing_demo_page_runs_its_experiment(
    browser,
    live_url: str,
    registry,  # noqa: F811
):
    seen = await asyncio.to_thread(_pricing_scenario, browser, live_url)

    assert seen["variant"] == seen["server_variant"]
    assert seen["shown"] == [seen["variant"]]
    assert seen["counted"]
    mine = seen["results"][seen["variant"]]
    assert (mine["impressions"], mine["conversions"]) == (1, 1)


async def test_the_script_and_the_page_are_served(client: httpx.AsyncClient):
    page = await client.get("/ab-demo")
    assert page.status_code == 200
    assert '<script src="/static/promptlooper-ab.js" defer></script>' in page.text
    response = await client.get("/static/promptlooper-ab.js")
    assert response.status_code == 200
    assert "javascript" in response.headers["content-type"]
    assert "fnv1a32" in response.text
