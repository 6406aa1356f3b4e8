"""``/docs`` and ``/redoc`` work with no way out of the machine: every script, stylesheet and
icon they load is served by PromptLooper itself."""

from __future__ import annotations

from html.parser import HTMLParser

import httpx
import pytest


class _Assets(HTMLParser):
    """The URLs a page loads: ``src`` of scripts and images, ``href`` of links."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        wanted = "href" if tag == "link" else "src"
        self.urls += [value for name, value in attrs if name == wanted and value]


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_docs_pages_load_only_assets_the_server_serves(
    client: httpx.AsyncClient, page: str
):
    response = await client.get(page)
    parser = _Assets()
    parser.feed(response.text)
    assets = {url: await client.get(url) for url in parser.urls if url.startswith("/")}

    assert response.status_code == 200
    assert "http://" not in response.text
    assert "https://" not in response.text
    assert any(url.endswith(".js") for url in parser.urls)
    assert all(url.startswith("/") and not url.startswith("//") for url in parser.urls)
    for url, asset in assets.items():
        assert asset.status_code == 200, url
        assert len(asset.content) > 1000, url
    kinds = {url.rsplit(".", 1)[-1]: a.headers["content-type"] for url, a in assets.items()}
    assert "javascript" in kinds["js"]
    if "css" in kinds:
        assert kinds["css"].startswith("text/css")
