"""Request bodies are bounded per route family and refused with 413 before they are read whole.

A declared ``Content-Length`` over the limit is answered at once, without reading a byte of
the body; a body without one (chunked) is counted as it streams in and refused as soon as it
passes the limit. Either way the connection is closed, so the rest is never read: a 500 MB
body costs the server no more memory than the limit. Public ingestion needs no credentials,
so its limit is the smallest.

A refusal is JSON for the API and a page under the web UI's prefix: a person who uploads too
large a file sees the form again with the reason beside the field, not a JSON document.

A pure ASGI middleware: Starlette's ``BaseHTTPMiddleware`` would wrap every request in a task
and a stream of its own, on the hottest routes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import compile_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

CLOSE = {"Connection": "close"}

PageRefusal = Callable[[Request, int], Awaitable[Response]]
"""Answers a refused body under the pages' prefix, given the limit in bytes. The request's
body must not be read: only its path, headers and cookies are there."""


@dataclass(frozen=True)
class BodyFamily:
    """Routes (templates such as ``/api/agents/{agent_id}/experiments``) sharing a limit in
    bytes (0: none), and the setting that sets it, named in the 413 so an admin knows which."""

    paths: Iterable[str]
    limit: int
    setting: str


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes its limit: routes and the app's
    exception handlers answer it as the 413 it is (FastAPI re-raises HTTP exceptions met
    while reading a body)."""

    def __init__(self, limit: int, setting: str) -> None:
        detail = f"Request body too large: this route accepts at most {limit} bytes ({setting})"
        super().__init__(413, detail, headers=CLOSE)
        self.limit = limit


class BodyLimit:
    """Bounds the body of every HTTP request: a family's limit on its routes, ``default``
    (set by ``default_setting``) elsewhere. Paths under ``pages`` (a prefix and its answer)
    are refused with the page that answer renders."""

    def __init__(
        self,
        app: ASGIApp,
        default: BodyFamily,
        families: Iterable[BodyFamily] = (),
        pages: tuple[str, PageRefusal] | None = None,
    ) -> None:
        self.app = app
        self.default = default
        self.pages = pages
        self.routes = [
            (compile_path(path)[0], family) for family in families for path in family.paths
        ]

    def _family(self, path: str) -> BodyFamily:
        for pattern, family in self.routes:
            if pattern.match(path):
                return family
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        family = self._family(scope["path"]) if scope["type"] == "http" else None
        if family is None or not family.limit:
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > family.limit:
            await self._refuse(BodyTooLarge(family.limit, family.setting), scope, receive, send)
            return

        received = 0
        started = False

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > family.limit:
                    raise BodyTooLarge(family.limit, family.setting)
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, bounded_receive, watched_send)
        except BodyTooLarge as refused:
            # Only an app that let the exception through gets here; answer it if we still can.
            if started:
                raise
            await self._refuse(refused, scope, receive, send)

    async def _refuse(
        self, refused: BodyTooLarge, scope: Scope, receive: Receive, send: Send
    ) -> None:
        response: Response
        if self.pages is not None and scope["path"].startswith(self.pages[0]):
            response = await self.pages[1](Request(scope), refused.limit)
            response.headers.update(CLOSE)
        else:
            response = JSONResponse({"detail": refused.detail}, refused.status_code, CLOSE)
        await response(scope, receive, send)
