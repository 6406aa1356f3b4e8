"""Routes served ahead of the router: the few that take a request per event or per served call.

They are declared on their routers as usual (that is where the API documentation and the
path come from) but a middleware hands them straight to a handler of their own: the router's
matching, dependency solving and response handling cost more than the work of such a request
(~170 µs of ~350 µs CPU per single browser event, measured). A handler reads and validates its
request itself and answers a ``Response``; what it raises is answered by the app's exception
handlers, as the router would.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute
from starlette.types import ASGIApp, Receive, Scope, Send

Handler = Callable[[Request], Awaitable[Response]]


class DirectRoutes:
    """Installed with ``add_middleware``, so the outer middleware still limits body size and
    turns a crash into a 500. ``routes`` pairs each route (as the router holds it) with its
    handler; a request another method sends to the same path goes on to the router."""

    def __init__(self, app: ASGIApp, routes: Sequence[tuple[APIRoute, Handler]]) -> None:
        self.app = app
        self._exact: dict[tuple[str, str], Handler] = {}
        self._templated: list[tuple[re.Pattern[str], frozenset[str], Handler]] = []
        for route, handler in routes:
            if route.param_convertors:
                self._templated.append((route.path_regex, frozenset(route.methods), handler))
            else:
                self._exact.update({(method, route.path): handler for method in route.methods})

    def _match(self, method: str, path: str) -> tuple[Handler | None, dict[str, str]]:
        if (handler := self._exact.get((method, path))) is not None:
            return handler, {}
        for pattern, methods, handler in self._templated:
            if method in methods and (found := pattern.match(path)) is not None:
                return handler, found.groupdict()
        return None, {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        handler, params = self._match(scope["method"], scope["path"])
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["path_params"] = params
        request = Request(scope, receive)
        try:
            response = await handler(request)
        except Exception as exc:
            answer = _handler_for(request, exc)
            if answer is None:
                raise
            response = await answer(request, exc)
        await response(scope, receive, send)


def _handler_for(request: Request, exc: Exception) -> Any:
    """The handler the router's exception middleware would use; unexpected errors go on to
    the outer middleware's 500, as they do from any route."""
    handlers = request.app.exception_handlers
    for cls in type(exc).__mro__:
        if cls is Exception:
            return None
        if cls in handlers:
            return handlers[cls]
    return None
