"""Crawler detection from the maintained CrawlerDetect user-agent list.

A hand-written pattern misses most of them (``\\bbot\\b`` does not even match ``Googlebot``);
the list has thousands, kept current upstream. An empty user agent is treated as a bot: real
browsers always send one.
"""

from __future__ import annotations

import functools
from typing import Any


@functools.cache
def _detector() -> Any:
    from crawlerdetect import CrawlerDetect

    return CrawlerDetect()


@functools.lru_cache(maxsize=4096)
def is_bot(user_agent: str | None) -> bool:
    """Whether ``user_agent`` belongs to a crawler, scraper, monitor or HTTP library.
    Cached: live traffic repeats a few thousand user agents over and over."""
    if not user_agent or not user_agent.strip():
        return True
    return bool(_detector().isCrawler(user_agent))
