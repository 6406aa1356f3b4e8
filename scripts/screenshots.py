"""Screenshots of the web UI's pages for the README, taken from the real pages.

Runs ``promptlooper demo`` (with the offline example sweep) on a throwaway database, logs in
with the password it prints, walks from page to page by following the pages' own links, and
saves a PNG of each to ``docs/screenshots/``. Needs Debian's chromium and chromium-driver.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

ROOT = Path(__file__).parents[1]
OUT = ROOT / "docs" / "screenshots"
SWEEP = ROOT / "examples" / "ticket-triage" / "sweep.yaml"
WIDTH = 1280
MAX_HEIGHT = 2400


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_demo(workdir: Path) -> tuple[subprocess.Popen[str], str, str]:
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{workdir / 'demo.db'}",
        "DATA_DIR": str(workdir / "data"),
        "LOG_LEVEL": "warning",
        "REDIS_URL": "",
    }
    command = [sys.executable, "-m", "promptlooper", "demo", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--sweep", str(SWEEP)],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    printed = ""
    deadline = time.monotonic() + 300
    assert process.stdout is not None
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        printed += line
        if found := re.search(r"password:\s+(\S+)", printed):
            password = found[1]
            break
        if process.poll() is not None:
            raise SystemExit(f"promptlooper demo exited:\n{printed}")
    else:
        raise SystemExit(f"promptlooper demo printed no password:\n{printed}")
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/api/health", timeout=2).status_code == 200:
                return process, base, password
        except httpx.TransportError:
            time.sleep(0.2)
    raise SystemExit("the demo server did not answer")


def _browser() -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--hide-scrollbars"):
        options.add_argument(flag)
    options.add_argument(f"--window-size={WIDTH},900")
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def _shoot(driver: webdriver.Chrome, name: str) -> None:
    """The whole page, up to MAX_HEIGHT: the window is the page's height plus the browser's
    own frame, which the window's size includes and the screenshot does not."""
    height, frame = driver.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    driver.set_window_size(WIDTH, min(max(int(height), 600), MAX_HEIGHT) + int(frame))
    driver.save_screenshot(str(OUT / f"{name}.png"))
    print(f"{name}: {driver.current_url}")
    driver.set_window_size(WIDTH, 900)


def _follow(driver: webdriver.Chrome, pattern: str) -> str:
    """Open the first link on the page whose address matches ``pattern``."""
    for link in driver.find_elements(By.CSS_SELECTOR, "a[href]"):
        href = link.get_attribute("href") or ""
        if re.search(pattern, href):
            driver.get(href)
            return href
    raise SystemExit(f"no link matching {pattern} on {driver.current_url}")


def _compare(driver: webdriver.Chrome, field: str, button: str) -> None:
    """Tick the first two items' boxes and submit the page's compare form."""
    for box in driver.find_elements(By.CSS_SELECTOR, f"input[type=checkbox][name={field}]")[:2]:
        box.click()
    driver.find_element(By.XPATH, f"//button[contains(., '{button}')]").click()


def walk(driver: webdriver.Chrome, base: str, password: str) -> None:
    driver.get(f"{base}/ui/login")
    _shoot(driver, "login")
    driver.find_element(By.NAME, "username").send_keys("demo")
    driver.find_element(By.NAME, "password").send_keys(password)
    driver.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()
    _shoot(driver, "home")
    _follow(driver, r"/ui/projects/[^/]+/sweeps$")
    _shoot(driver, "sweeps")
    sweep = _follow(driver, r"/ui/sweeps/[0-9a-f-]{36}$")
    _shoot(driver, "leaderboard")
    _follow(driver, r"/configs/")
    _shoot(driver, "config-runs")
    _follow(driver, r"/ui/runs/")
    _shoot(driver, "run")
    driver.get(sweep)
    _compare(driver, "config", "Compare selected")
    _shoot(driver, "sweep-compare")
    driver.get(sweep)
    _follow(driver, r"/projects/[^/]+/agents$")
    _shoot(driver, "agents")
    agent = _follow(driver, r"/ui/agents/[0-9a-f-]{36}$")
    _shoot(driver, "agent")
    _follow(driver, r"/ui/agents/[^/]+/variants/[0-9a-f-]{36}$")
    _shoot(driver, "variant")
    driver.get(agent)
    _compare(driver, "variant", "Compare ticked")
    _shoot(driver, "variant-compare")
    driver.get(f"{base}/ui/online")
    _shoot(driver, "online")
    _follow(driver, r"/ui/online/homepage_hero_test$")
    time.sleep(1)  # the charts draw once uPlot has loaded
    _shoot(driver, "online-results")
    driver.get(f"{base}/ui/online/new")
    _shoot(driver, "online-new")
    driver.get(f"{base}/ui/training")
    _shoot(driver, "training")
    _follow(driver, r"/ui/training/runs/[0-9a-f-]{36}$")
    time.sleep(1)
    _shoot(driver, "training-run")


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        process, base, password = _start_demo(Path(scratch))
        driver = _browser()
        try:
            walk(driver, base, password)
        finally:
            driver.quit()
            process.terminate()
            process.wait(15)


if __name__ == "__main__":
    main()
