"""The agents pages in headless Chromium against ``promptlooper serve`` as deployed: a user
logs in through the form and walks an agent's life (variants created, cloned, edited, handed
back to the base, activated with a reason, compared, rolled back, deleted), reading each page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import drop_database, fresh_database
from tests.deployed import Deployed, start_server
from tests.web.browsing import Walk
from tests.web.conftest import PASSWORD


@pytest.fixture
def deployed(tmp_path: Path) -> Iterator[Deployed]:
    """A server on a new SQLite database, with the user ``alice``."""
    url = asyncio.run(fresh_database("sqlite", tmp_path)).replace("+aiosqlite", "")
    server = start_server(url, tmp_path / "server")
    with server.client() as http:
        made = http.post(
            "/api/users", json={"username": "alice", "password": PASSWORD}, headers=server.admin
        )
        assert made.status_code == 201, made.text
    yield server
    server.stop()
    print(f"--- log of {server.url} ---\n{server.log()}")
    asyncio.run(drop_database(url))


def _walk(driver: Any, base: str) -> None:
    walk = Walk(driver, base)
    walk.open("/ui/agents/" + "0" * 32)
    assert "Log in" in walk.text()
    walk.fill({"username": "alice", "password": PASSWORD})
    walk.click("Log in")
    assert "Not found" in walk.text()  # back where the login began: nothing there
    walk.open("/ui/")
    walk.fill({"name": "Browser project"})
    walk.click("Create project")
    project_id = re.search(r"/ui/projects/([0-9a-f-]{36})", walk.path())[1]

    walk.open(f"/ui/projects/{project_id}/agents")
    assert "No agents yet" in walk.text()
    walk.click("New agent")
    walk.fill(
        {
            "name": "Helper",
            "model_provider": "mock",
            "model_name": "m1",
            "system_prompt": "Be kind.",
            "temperature": "0.3",
        }
    )
    walk.click("Create agent")
    assert "Agent Helper created" in walk.text()
    agent_url = walk.path()

    walk.click("New variant")
    walk.fill({"name": "alpha", "temperature": "0.5"})
    walk.click("Create variant")
    text = walk.text()
    assert "Variant alpha created" in text
    assert "temperature 0.5 this variant (overrides the base)" in text
    assert "system_prompt Copy Be kind. agent's base config" in text
    alpha_id = walk.path().rsplit("/", 1)[-1]

    walk.click("Clone")
    assert "Clone alpha" in walk.text()
    walk.fill({"name": "beta", "max_tokens": "64"})
    walk.click("Create clone")
    text = walk.text()
    assert "Variant beta cloned from alpha" in text
    assert "max_tokens 64 this variant" in text
    assert "temperature 0.5 this variant" in text
    beta_id = walk.path().rsplit("/", 1)[-1]

    walk.click("Edit")
    walk.fill({"max_tokens": "128"})
    walk.click("Save")
    text = walk.text()
    assert "Variant beta saved as revision 2." in text
    assert "max_tokens 128 this variant" in text

    walk.click("Edit")
    walk.tick("inherit_max_tokens")
    walk.click("Save")
    text = walk.text()
    assert "Variant beta saved as revision 3." in text
    assert "max_tokens not set default (not set)" in text

    walk.open(agent_url)
    walk.confirm("Activate beta", "Activate", reason="longer answers help")
    text = walk.text()
    assert "Variant beta activated" in text
    assert "Serves variant beta active" in text
    assert "base config beta longer answers help" in text  # the activation log

    walk.tick("variant", alpha_id)
    walk.tick("variant", beta_id)
    walk.click("Compare ticked variants")
    text = walk.text()
    assert "Compare variants of Helper" in text
    assert "temperature differs 0.3 0.5 0.5" in text
    assert "model_name same m1 m1 (inherited) m1 (inherited)" in text
    assert "No calls logged in this window." in text

    walk.open(f"{agent_url}/variants/{beta_id}")
    walk.confirm("Roll back to 2", "Roll back")
    text = walk.text()
    assert "Variant beta rolled back: its config is now revision 4." in text
    assert "max_tokens 128 this variant" in text

    walk.open(agent_url)
    walk.confirm("Delete alpha", "Delete variant")
    text = walk.text()
    assert "Variant alpha deleted." in text
    assert "alpha" not in text.split("Activation log")[0].replace("Variant alpha deleted.", "")


def test_an_agents_life_in_the_browser(browser, deployed: Deployed):
    _walk(browser, deployed.url)


def test_back_after_logout_shows_nothing_private(browser: Any, deployed: Deployed) -> None:
    """Pages are no-store: after logging out, the back button asks the server again, which
    answers with the login form instead of the page the browser showed before."""
    walk = Walk(browser, deployed.url)
    walk.open("/ui/login")
    walk.fill({"username": "alice", "password": PASSWORD})
    walk.click("Log in")
    walk.fill({"name": "Secret project 7"})
    walk.click("Create project")
    project_path = walk.path()
    walk.open(project_path.split("/sweeps")[0] + "/agents")
    walk.click("New agent")
    walk.fill({"name": "Private helper", "model_provider": "mock", "model_name": "m1"})
    walk.click("Create agent")
    assert "Private helper" in walk.text()
    agent_path = walk.path()

    walk.click("Log out")
    assert "Log in" in walk.text()
    browser.back()
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 15).until(
        lambda d: d.execute_script("return document.readyState") == "complete"
    )
    text = walk.text()
    assert "Private helper" not in text
    assert "Secret project 7" not in text
    assert "Log in" in text
    assert browser.current_url.startswith(deployed.url + "/ui/login")
    assert agent_path.removeprefix("/") in browser.current_url.replace("%2F", "/")


def test_the_agent_pages_fit_a_phone(browser, deployed: Deployed):
    """At 390 px the agents list, an agent and its variant keep within the window: long
    prompts and the variants' overrides wrap, or scroll inside their own box."""
    walk = Walk(browser, deployed.url)
    walk.open("/ui/login")
    walk.fill({"username": "alice", "password": PASSWORD})
    walk.click("Log in")
    walk.open("/ui/")
    walk.fill({"name": "Phone project"})
    walk.click("Create project")
    project_id = re.search(r"/ui/projects/([0-9a-f-]{36})", walk.path())[1]
    walk.open(f"/ui/projects/{project_id}/agents")
    walk.click("New agent")
    prompt = "Answer the customer's question about their order carefully: {{ input }} " * 4
    walk.fill(
        {
            "name": "Support agent with a long name",
            "model_provider": "mock",
            "model_name": "a-rather-long-model-name-v2",
            "system_prompt": "You are a careful, friendly support assistant. " * 6,
            "user_prompt_template": prompt,
        }
    )
    walk.click("Create agent")
    agent_url = walk.path()
    walk.click("New variant")
    walk.fill({"name": "warmer", "temperature": "0.9", "system_prompt": "Be warm. " * 20})
    walk.click("Create variant")
    variant_url = walk.path()

    browser.set_window_size(390, 900)
    try:
        width = browser.execute_script("return window.innerWidth")
        assert width <= 400
        for page in (f"/ui/projects/{project_id}/agents", agent_url, variant_url):
            walk.open(page)
            page_width = browser.execute_script("return document.documentElement.scrollWidth")
            wide = browser.execute_script(
                "return [...document.querySelectorAll('body *')].filter(e => "
                "e.getBoundingClientRect().right > window.innerWidth + 1 && "
                "!e.closest('.table-wrap')).map(e => e.tagName + '.' + e.className + ' ' + "
                "Math.round(e.getBoundingClientRect().right)).slice(0, 12)"
            )
            assert page_width <= width, (page, page_width, width, wide)
    finally:
        browser.set_window_size(1280, 900)
