"""A training run's page in headless Chromium against ``promptlooper serve``: a run trained a
few steps on the tiny model through the API, its curve drawn with one point per step, and a
sample sent through the page's form with its answer and stop reason shown."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.deployed import Deployed, start_server
from tests.web.browsing import Walk
from tests.web.conftest import PASSWORD

STEPS = 4
EXAMPLES = [
    {"text": "The capital of France is Paris."},
    {"text": "My card was charged twice. Answer: billing."},
]
SAMPLE = {"prompts": ["The capital"], "max_tokens": 6, "temperature": 0, "seed": 3}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Deployed]:
    deployed = start_server(
        f"sqlite:///{tmp_path / f'{uuid.uuid4().hex}.db'}",
        tmp_path / "srv",
        {"TRAINING_DEVICE": "cpu"},
    )
    yield deployed
    deployed.stop()


def _train(http: httpx.Client, headers: dict[str, str]) -> tuple[str, str]:
    """A run on tiny-test trained ``STEPS`` steps; its id and what greedy sampling answers."""
    created = http.post(
        "/api/training/runs",
        json={"base_model": "tiny-test", "name": "browser run"},
        headers=headers,
    )
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]
    for _ in range(STEPS):
        done = http.post(
            f"/api/training/runs/{run_id}/forward_backward",
            json={"examples": EXAMPLES},
            headers=headers,
        )
        assert done.status_code == 200, done.text
        stepped = http.post(
            f"/api/training/runs/{run_id}/optim_step", json={"learning_rate": 1e-3}, headers=headers
        )
        assert stepped.status_code == 200, stepped.text
    saved = http.post(
        f"/api/training/runs/{run_id}/save_state",
        json={"kind": "adapter", "name": "tuned"},
        headers=headers,
    )
    assert saved.status_code == 201, saved.text
    sampled = http.post(f"/api/training/runs/{run_id}/sample", json=SAMPLE, headers=headers)
    assert sampled.status_code == 200, sampled.text
    return run_id, sampled.json()["samples"][0]["sequences"][0]["text"]


def _until(driver: Any, check: Any, timeout: float = 30) -> Any:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, ignored_exceptions=(WebDriverException,)).until(check)


def _points(driver: Any) -> list[int]:
    """The loss curve's points as the page's JSON holds them and as uPlot drew them."""
    return driver.execute_script(
        "var f = document.querySelector('figure[data-chart=\"curve-loss\"]');"
        "var spec = JSON.parse(document.getElementById('curve-loss').textContent);"
        "return [spec.x.length, f && f._plot ? f._plot.data[0].length : -1];"
    )


def _plot_width(driver: Any) -> int:
    return driver.execute_script(
        "return document.querySelector('figure[data-chart=\"curve-loss\"]')._plot.width"
    )


def _scenario(driver: Any, base: str, run_id: str, expected: str) -> None:
    from selenium.webdriver.common.by import By

    walk = Walk(driver, base)
    driver.get(base + "/ui/login")
    driver.find_element(By.ID, "username").send_keys("alice")
    driver.find_element(By.ID, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "button[type=submit].primary").click()
    _until(driver, lambda d: "/ui/login" not in d.current_url)

    walk.open("/ui/training")
    assert "browser run" in walk.text()
    driver.find_element(By.LINK_TEXT, "browser run").click()
    _until(driver, lambda d: f"/ui/training/runs/{run_id}" in d.current_url)
    assert f"Step {STEPS}, loss" in walk.text()
    _until(driver, lambda d: _points(d)[1] == STEPS)  # uPlot has drawn it
    assert _points(driver) == [STEPS, STEPS]
    # One chart a row, wide enough that uPlot would tick every half step of these four.
    driver.set_window_size(700, 900)
    _until(driver, lambda d: _plot_width(d) > 500)
    ticks = driver.execute_script(
        "return document.querySelector('figure[data-chart=\"curve-loss\"]')._plot.axes[0]._splits"
    )
    assert ticks
    assert all(float(t).is_integer() for t in ticks), ticks  # steps: 1, 2, 3, never 2.5
    driver.set_window_size(1280, 900)
    # The run trained moments ago: the page polls its curves, swaps them in and draws them
    # again, with the smoothing chosen before the swap.
    driver.execute_script(
        "var s = document.querySelector('input[data-smooth-for~=\"curve-loss\"]');"
        "s.value = '0.5'; s.dispatchEvent(new Event('input', {bubbles: true}));"
        "document.getElementById('curves').dataset.seen = 'yes';"
    )
    _until(
        driver, lambda d: d.execute_script("return !document.getElementById('curves').dataset.seen")
    )
    _until(driver, lambda d: _points(d) == [STEPS, STEPS])
    smoothed = driver.execute_script(
        "var f = document.querySelector('figure[data-chart=\"curve-loss\"]');"
        "return [document.querySelector('input[data-smooth-for~=\"curve-loss\"]').value,"
        " f._plot.data.length];"
    )
    assert smoothed == ["0.5", 3]  # x, the raw loss faded, the smoothed loss
    # The value shows beside the slider and stays in the URL: a reload keeps it.
    assert driver.find_element(By.CSS_SELECTOR, "output[data-smooth-value]").text == "0.50"
    assert walk.path() == f"/ui/training/runs/{run_id}?smooth=0.5"
    driver.refresh()
    _until(driver, lambda d: _points(d)[1] == STEPS)
    assert driver.execute_script(
        "return [document.getElementById('smooth').value,"
        " document.querySelector('figure[data-chart=\"curve-loss\"]')._plot.data.length];"
    ) == ["0.5", 3]
    log_link = driver.find_element(By.LINK_TEXT, "log").get_attribute("href")
    assert "scale=log" in log_link, log_link
    assert "smooth=0.5" in log_link, log_link

    prompt = driver.find_element(By.ID, "f-prompt")
    prompt.send_keys(SAMPLE["prompts"][0])
    for name in ("max_tokens", "temperature", "seed"):
        box = driver.find_element(By.ID, f"f-{name}")
        box.clear()
        box.send_keys(str(SAMPLE[name]))
    walk.click("Sample")
    assert "Stop reason" in walk.text()
    answer = driver.find_element(By.CSS_SELECTOR, ".sample-answer pre").text
    assert answer == expected.strip()
    reason = driver.find_element(By.CSS_SELECTOR, ".stop-reason").text
    assert reason in ("stop", "length")
    assert _points(driver)[0] == STEPS  # the page came back with its curve
    assert "smooth=0.5" in walk.path()  # and with the smoothing

    # On a phone the checkpoint's reference and its Copy button are on screen.
    driver.set_window_size(375, 800)
    walk.open(f"/ui/training/runs/{run_id}")
    width = driver.execute_script("return window.innerWidth")
    assert driver.execute_script("return document.scrollingElement.scrollWidth") <= width
    for css in ("table.checkpoints .copy", "table.checkpoints pre"):
        box = driver.execute_script(
            "return arguments[0].getBoundingClientRect().right",
            driver.find_element(By.CSS_SELECTOR, css),
        )
        assert box <= width, (css, box, width)


def test_training_run_page_in_a_browser(browser: Any, server: Deployed) -> None:
    with server.client(timeout=120) as http:
        created = http.post(
            "/api/users", json={"username": "alice", "password": PASSWORD}, headers=server.admin
        )
        assert created.status_code == 201, created.text
        login = http.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        headers = {"Authorization": f"Bearer {login.json()['access_token']}"}
        run_id, expected = _train(http, headers)
    began = time.monotonic()
    try:
        _scenario(browser, server.url, run_id, expected)
    except Exception:
        print(server.log()[-5000:])
        raise
    assert time.monotonic() - began < 120
