"""The origin rule for writes: CORS keeps a page on another site from reading answers, not
from sending a "simple" POST (``text/plain``, ``mode: "no-cors"``, ``sendBeacon``), so
ingestion refuses events from pages whose origin the CORS layer (``api/cors.py``) would not
allow.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit

from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send


class Origins:
    """Which pages may write to the public routes: those whose origin Starlette's CORS rule
    allows for ``origins``, and the server's own pages."""

    def __init__(self, origins: Sequence[str]) -> None:
        self._cors = CORSMiddleware(_no_app, allow_origins=origins)

    def allow(self, origin: str | None, host: str | None) -> bool:
        """Whether a request with this ``Origin`` header, sent to ``host`` (its ``Host``
        header), may write. No ``Origin`` is not a browser's cross-site request (a server-side
        SDK, curl), and the server's own pages send their own host."""
        if origin is None:
            return True
        if host is not None and urlsplit(origin).netloc.lower() == host.lower():
            return True
        return self._cors.is_allowed_origin(origin)


async def _no_app(scope: Scope, receive: Receive, send: Send) -> None:
    """``Origins`` only asks its ``CORSMiddleware`` about origins; it never serves."""
    raise NotImplementedError
