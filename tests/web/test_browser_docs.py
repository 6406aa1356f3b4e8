"""``/docs`` and ``/redoc`` render in headless Chromium with every request off the machine
refused, as on a server with no way out."""

from __future__ import annotations

import asyncio

import pytest

PAGES = {
    # Swagger UI: one block per operation
    "/docs": ".opblock",
    # ReDoc: one menu entry per operation
    "/redoc": "[role=menuitem]",
}


def _rendered(driver, url: str, selector: str) -> int:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    # The server is on http://127.0.0.1; every CDN is https.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["https://*"]})
    driver.get(url)
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, selector)) > 10)
    return len(driver.find_elements(By.CSS_SELECTOR, selector))


@pytest.mark.parametrize("page", list(PAGES))
async def test_the_docs_render_offline(
    browser,
    live_url: str,
    page: str,
):
    shown = await asyncio.to_thread(_rendered, browser, live_url + page, PAGES[page])
    assert shown > 10
