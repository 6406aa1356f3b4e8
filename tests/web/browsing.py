"""Walking the pages in a browser: read a page, fill its forms, follow a link and wait for the
next page, whatever the speed of the machine."""

from __future__ import annotations

from typing import Any


class Walk:
    """A browser session with short ways to read the page and fill its forms."""

    def __init__(self, driver: Any, base: str) -> None:
        from selenium.webdriver.common.by import By

        self.driver = driver
        self.base = base
        self.by = By

    def open(self, path: str) -> None:
        self.driver.get(self.base + path)

    def text(self) -> str:
        body = self.driver.find_element(self.by.TAG_NAME, "body").text
        return " ".join(body.split())

    def fill(self, fields: dict[str, str]) -> None:
        for name, value in fields.items():
            box = self.driver.find_element(self.by.NAME, name)
            box.clear()
            box.send_keys(value)

    def _navigating(self, element: Any) -> None:
        """Click ``element`` and wait until a new page has loaded: the old page's window
        carries a mark that the new one lacks (the URL may well be the same)."""
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver.execute_script("window.walkMark = true")
        try:
            element.click()
        except WebDriverException as exc:
            # The form can submit and the page go before chromedriver finishes the click; a
            # click that did nothing still fails below, waiting for a page that never comes.
            if "does not belong to the document" not in exc.msg:
                raise
        WebDriverWait(self.driver, 15, ignored_exceptions=(WebDriverException,)).until(
            lambda d: d.execute_script(
                "return !window.walkMark && document.readyState === 'complete'"
            )
        )

    def click(self, text: str) -> None:
        """Follow the link or press the button showing ``text``."""
        xpath = f"//a[normalize-space()='{text}'] | //button[normalize-space()='{text}']"
        self._navigating(self.driver.find_element(self.by.XPATH, xpath))

    def confirm(self, label: str, button: str, reason: str | None = None) -> None:
        """Open the disclosure ``label``, give a reason, press its ``button``."""
        details = self.driver.find_element(
            self.by.XPATH, f"//details[summary[normalize-space()='{label}']]"
        )
        details.find_element(self.by.TAG_NAME, "summary").click()
        if reason is not None:
            details.find_element(self.by.NAME, "reason").send_keys(reason)
        self._navigating(
            details.find_element(self.by.XPATH, f".//button[normalize-space()='{button}']")
        )

    def tick(self, name: str, value: str | None = None) -> None:
        where = f"[@value='{value}']" if value else ""
        box = self.driver.find_element(self.by.XPATH, f"//input[@name='{name}']{where}")
        # In the middle of the window: a table's sticky header would cover it at the top.
        self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", box)
        box.click()

    def path(self) -> str:
        return self.driver.current_url.removeprefix(self.base)
