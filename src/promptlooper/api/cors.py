"""CORS for the routes that pages on other sites call: the public experiment registry,
assignment, ingestion and the A/B script.

Starlette's ``CORSMiddleware`` does the work; this only scopes it, so every other route answers
another origin with no CORS headers at all, whatever ``CORS_ORIGINS`` says: a page elsewhere
can never read an authenticated answer. Credentials are never allowed: the browser script sends
none, and the public routes need none.

CORS only keeps a page from *reading* an answer: a "simple" POST (``text/plain``,
``mode: "no-cors"``, ``sendBeacon``) is still delivered. So ingestion asks ``Origins`` too, and
refuses an event whose ``Origin`` header names a site outside ``CORS_ORIGINS``
(``online/origins.py``, with the same Starlette rule).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from starlette.middleware.cors import CORSMiddleware
from starlette.routing import compile_path
from starlette.types import ASGIApp, Receive, Scope, Send


class PublicCORS:
    """Starlette's CORS handling for ``paths`` (route templates such as
    ``/api/experiments/{experiment_key}/assignment``); other paths go straight to ``app``."""

    def __init__(
        self,
        app: ASGIApp,
        origins: Sequence[str],
        paths: Iterable[str],
        expose_headers: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.cors = CORSMiddleware(
            app,
            allow_origins=origins,
            allow_methods=("GET", "POST"),
            allow_credentials=False,
            expose_headers=expose_headers,
        )
        self.paths = [compile_path(path)[0] for path in paths]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and any(p.match(scope["path"]) for p in self.paths):
            await self.cors(scope, receive, send)
        else:
            await self.app(scope, receive, send)
