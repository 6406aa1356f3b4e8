"""The browser script follows guardrails and bandits, in real headless Chromium: a visitor
whose cookie holds a stopped arm is shown the control (the cookie keeps the arm, and its events
name it: the visitor counts in its own arm), and a new visitor is placed with a bandit's
weights in force, as the server's assignment places them."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import select, update

from promptlooper.online.models import ExperimentEvent, OnlineExperiment
from tests.online.conftest import registry  # noqa: F401 (fixture)

TREATMENT = "tiny_gang_social_proof"


def _shown(driver, base: str) -> tuple[list[str], dict[str, str]]:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/ab-demo")
    WebDriverWait(driver, 15).until(
        lambda d: d.find_element(By.ID, "assigned").text.startswith("{")
    )
    shown = driver.find_elements(By.CSS_SELECTOR, "[data-experiment-shown]")
    cookies = {c["name"]: c["value"] for c in driver.get_cookies()}
    return [s.get_attribute("data-variant") for s in shown if s.is_displayed()], cookies


async def _set(sessionmaker, **values) -> None:
    async with sessionmaker() as session:
        await session.execute(
            update(OnlineExperiment)
            .where(OnlineExperiment.experiment_key == "homepage_hero_test")
            .values(**values)
        )
        await session.commit()


async def _clicks(sessionmaker, unit: str) -> list[str]:
    """The arms the unit's clicks were stored under, once there are any."""
    query = select(ExperimentEvent.variant_key).where(
        ExperimentEvent.session_id == unit, ExperimentEvent.event_type == "cta_click"
    )
    for _ in range(100):
        async with sessionmaker() as session:
            found = list(await session.scalars(query))
        if found:
            return found
        await asyncio.sleep(0.1)
    return []


async def test_the_script_serves_control_for_a_stopped_arm_and_follows_bandit_weights(
    browser,
    live_url: str,
    sessionmaker,
    registry,  # noqa: F811
):
    await _set(sessionmaker, stopped_arms={TREATMENT: {"metric": "cost-per-call"}})
    await asyncio.to_thread(_shown, browser, live_url)
    browser.add_cookie({"name": "exp_homepage_hero", "value": TREATMENT, "path": "/"})
    shown, cookies = await asyncio.to_thread(_shown, browser, live_url)
    assert shown == ["control"]
    assert cookies["exp_homepage_hero"] == TREATMENT
    script = 'PromptLooperAB.track("cta_click", {experiment: "homepage_hero_test"})'
    await asyncio.to_thread(browser.execute_script, script)
    assert await _clicks(sessionmaker, cookies["pl_sid"]) == [TREATMENT]

    await _set(sessionmaker, stopped_arms={}, type="bandit", weights=[0.0, 1.0])
    for _ in range(4):  # new visitors: with the allocations, each would be a coin toss
        browser.delete_all_cookies()
        shown, cookies = await asyncio.to_thread(_shown, browser, live_url)
        assert shown == [TREATMENT]
        async with httpx.AsyncClient(base_url=live_url) as http:
            server = await http.get(
                "/api/experiments/homepage_hero_test/assignment",
                params={"unit_id": cookies["pl_sid"]},
            )
        assert server.json()["variant_key"] == TREATMENT
