"""The sweeps pages in headless Chromium against ``promptlooper serve``: log in, a project,
a sweep pasted into the form and run, the leaderboard sorted, a config, a run, two configs
compared, and a config promoted to a variant of a new agent."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.deployed import Deployed, start_server
from tests.web.browsing import Walk
from tests.web.conftest import PASSWORD
from tests.web.test_sweep_pages import DOCUMENT

SWEEP = {**DOCUMENT, "name": "browser triage"}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Deployed]:
    deployed = start_server(f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}", tmp_path / "srv")
    yield deployed
    deployed.stop()


def _until(driver: Any, check: Any, timeout: float = 30) -> Any:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    # Mid-navigation the old page's elements go stale or missing: look again.
    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(check)


def _text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "main").text


def _finished_sweep(
    driver: Any,
    base: str,
    sweep: dict[str, Any] = SWEEP,
    finished: Any = lambda text: "12 / 12 runs" in text,
) -> str:
    """Log in as alice, create a project, paste the sweep, run it until ``finished`` says so
    of the page's text; the experiment's URL."""
    from selenium.webdriver.common.by import By

    driver.get(base + "/ui/login")
    driver.find_element(By.ID, "username").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
    _until(driver, lambda d: "Nothing needs attention" in _text(d))

    driver.find_element(By.ID, "f-name").send_keys("support")
    driver.find_element(By.XPATH, "//button[text()='Create project']").click()
    _until(driver, lambda d: "No sweeps in this project yet" in _text(d))
    assert re.search(r"/ui/projects/[0-9a-f-]{36}/sweeps$", driver.current_url)

    driver.find_element(By.LINK_TEXT, "New sweep").click()
    driver.find_element(By.ID, "f-document").send_keys(json.dumps(sweep))
    driver.find_element(By.XPATH, "//button[text()='Create draft']").click()
    _until(driver, lambda d: "created as a draft of" in _text(d))
    experiment_url = driver.current_url

    driver.find_element(By.XPATH, "//button[text()='Start']").click()
    _until(driver, lambda d: finished(_text(d)))  # htmx refreshes the progress
    return experiment_url


def _column(driver: Any, label: str) -> int:
    """The 1-based position of the leaderboard column whose header starts with ``label``."""
    from selenium.webdriver.common.by import By

    headers = driver.find_elements(By.CSS_SELECTOR, "table.leaderboard thead th")
    return 1 + [h.text.startswith(label) for h in headers].index(True)


def _scenario(driver: Any, base: str) -> None:
    from selenium.webdriver.common.by import By

    experiment_url = _finished_sweep(driver, base)
    driver.get(experiment_url)
    page = _text(driver)
    assert re.search(r"Config #1 \([0-9a-f]{8}\) leads with \d\.\d{3}", page)
    assert "completed" in page

    driver.find_element(By.PARTIAL_LINK_TEXT, "Tokens out").click()
    _until(driver, lambda d: "sort=tokens_out" in d.current_url)
    header = driver.find_element(By.XPATH, "//th[contains(., 'Tokens out')]")
    assert header.get_attribute("aria-sort") == "descending"
    column = _column(driver, "Tokens out")
    cells = driver.find_elements(By.CSS_SELECTOR, f"table.leaderboard tbody td:nth-child({column})")
    values = [int(c.text.replace(",", "")) for c in cells]
    assert values == sorted(values, reverse=True)
    assert len(values) == 4

    first = driver.find_element(By.CSS_SELECTOR, "table.leaderboard tbody tr td:nth-child(2) a")
    first.click()
    _until(driver, lambda d: "Config #" in _text(d) and "Runs" in _text(d))
    driver.find_element(By.CSS_SELECTOR, "a[href^='/ui/runs/']").click()
    _until(driver, lambda d: "Stage 1" in _text(d))
    run_page = _text(driver)
    assert "Prompt" in run_page
    assert "Response" in run_page
    assert "(simulated)" in run_page

    driver.get(experiment_url)
    boxes = driver.find_elements(By.CSS_SELECTOR, "input[name=config]")
    boxes[0].click()
    boxes[1].click()
    driver.find_element(By.XPATH, "//button[starts-with(text(), 'Compare selected')]").click()
    _until(driver, lambda d: "2 configs side by side" in _text(d))
    assert "/compare?config=" in driver.current_url
    assert len(driver.find_elements(By.CSS_SELECTOR, "table.compare tbody tr")) == 3
    (paired,) = driver.find_elements(By.CSS_SELECTOR, "#paired-stats tbody tr")
    cells = [cell.text for cell in paired.find_elements(By.TAG_NAME, "td")]
    assert re.fullmatch(r"[+-]\d\.\d{3} \[[+-]\d\.\d{3}, [+-]\d\.\d{3}\]", cells[2]), cells
    assert re.match(r"p (=|<) 0\.\d{3} (paired-t|mcnemar)", cells[3]), cells
    assert cells[5] in {"better", "worse", "tied"}
    assert (cells[5] == "tied") == ("rows would separate them" in cells[6]), cells

    driver.get(experiment_url)
    driver.find_element(By.ID, "f-new_agent").send_keys("triage bot")
    driver.find_element(By.ID, "f-name").send_keys("best of sweep")
    driver.find_element(By.XPATH, "//button[text()='Promote']").click()
    _until(driver, lambda d: "/variants/" in d.current_url)
    promoted = re.search(
        r"/ui/agents/([0-9a-f-]{36})/variants/([0-9a-f-]{36})$", driver.current_url
    )
    assert promoted
    walk = Walk(driver, base)
    _until(driver, lambda d: "best of sweep" in walk.text())
    assert "triage bot" in walk.text()

    # The rest of a newcomer's first visit: clone the promoted variant, activate the clone,
    # and compare the two.
    walk.click("Clone")
    walk.fill({"name": "best of sweep, warmer", "temperature": "0.9"})
    walk.click("Create clone")
    assert "cloned from best of sweep" in walk.text()
    walk.open(f"/ui/agents/{promoted[1]}")
    walk.confirm("Activate best of sweep, warmer", "Activate", reason="warmer reads better")
    assert "Serves variant best of sweep, warmer active" in walk.text()
    for box in driver.find_elements(By.CSS_SELECTOR, "input[name=variant]"):
        if not box.is_selected():
            box.click()
    walk.click("Compare ticked variants")
    text = walk.text()
    assert "Compare variants of triage bot" in text
    temperature_row = text.split("temperature differs ")[1].split(" max_tokens")[0]
    assert temperature_row.endswith("0.9"), temperature_row


def test_sweep_pages_in_a_browser(browser: Any, server: Deployed) -> None:
    with server.client() as http:
        created = http.post(
            "/api/users", json={"username": "alice", "password": PASSWORD}, headers=server.admin
        )
        assert created.status_code == 201, created.text
    began = time.monotonic()
    try:
        _scenario(browser, server.url)
    except Exception:
        print(server.log()[-5000:])
        raise
    assert time.monotonic() - began < 120


def _box(driver: Any, element: Any) -> dict[str, float]:
    return driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return {left: r.left, right: r.right, width: window.innerWidth,"
        " page: document.documentElement.scrollWidth};",
        element,
    )


def test_leaderboard_key_columns_are_in_view_on_a_phone(browser: Any, server: Deployed) -> None:
    """At 375 px the rank, config and mean score (with its interval) are on screen; the table
    scrolls sideways in its own box, not the page, and rank and config stay pinned."""
    from selenium.webdriver.common.by import By

    with server.client() as http:
        created = http.post(
            "/api/users", json={"username": "alice", "password": PASSWORD}, headers=server.admin
        )
        assert created.status_code == 201, created.text
    experiment_url = _finished_sweep(browser, server.url)
    browser.set_window_size(375, 800)
    browser.get(experiment_url)
    width = browser.execute_script("return window.innerWidth")
    assert width <= 400, width
    header = browser.find_element(By.XPATH, "//th[contains(., 'Mean weighted score')]")
    box = _box(browser, header)
    assert box["left"] >= 0, box
    assert box["right"] <= box["width"], box
    score = browser.find_element(By.CSS_SELECTOR, "table.leaderboard tbody td:nth-child(3)")
    assert re.fullmatch(r"\d\.\d{3} \[\d\.\d{3}, \d\.\d{3}\]", score.text), score.text
    assert _box(browser, score)["right"] <= width
    assert box["page"] <= width  # the page itself does not scroll sideways

    wrap = browser.find_element(By.CSS_SELECTOR, ".table-wrap")
    browser.execute_script("arguments[0].scrollLeft = arguments[0].scrollWidth", wrap)
    assert browser.execute_script("return arguments[0].scrollLeft", wrap) > 0
    config = browser.find_element(By.CSS_SELECTOR, "table.leaderboard tbody td:nth-child(2)")
    pinned = _box(browser, config)
    assert pinned["left"] >= 0, pinned
    assert pinned["right"] <= width / 2, pinned


def test_a_finished_race_reads_finished_and_compares_by_short_hashes(
    browser: Any, server: Deployed
) -> None:
    """The race's page says how many runs completed and how many the search skipped, with no
    Resume button; the 8-character hashes of its leaderboard open the compare page."""
    from selenium.webdriver.common.by import By

    from tests.sweeps.test_search_racing import racing

    with server.client() as http:
        created = http.post(
            "/api/users", json={"username": "alice", "password": PASSWORD}, headers=server.admin
        )
        assert created.status_code == 201, created.text
    experiment_url = _finished_sweep(
        browser,
        server.url,
        racing({"good": 0.95, "close": 0.93, "bad": 0.1}),
        finished=lambda text: "skipped by the search of 240 runs" in text,
    )
    progress = browser.find_element(By.ID, "progress").text
    completed, skipped = map(
        int, re.search(r"(\d+) completed \+ (\d+) skipped by the search", progress).groups()
    )
    assert completed + skipped == 240
    assert not browser.find_elements(By.XPATH, "//button[text()='Resume']")

    shown = [
        link.text
        for link in browser.find_elements(
            By.CSS_SELECTOR, "table.leaderboard tbody tr td:nth-child(2) a"
        )
    ]
    hashes = [re.search(r"[0-9a-f]{8}", text).group(0) for text in shown[:2]]
    browser.get(f"{experiment_url}/compare?config={hashes[0]}&config={hashes[1]}")
    _until(browser, lambda d: "2 configs side by side" in _text(d))
