"""Failures as pages: a page never answers JSON or a bare 500.

Every UI router uses ``PageRoute``: an unknown id or another user's resource is the same 404
page (a page never reveals what someone else has), an admin-only page is 403, an expired
session goes to the login form and comes back, and a refused form says why.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from promptlooper import errors
from promptlooper.web.render import is_htmx, page
from promptlooper.web.session import PREFIX, LoginRequired

logger = logging.getLogger(__name__)

NOT_FOUND = "There is nothing here, or it is not yours to see."


def _login(request: Request, exc: LoginRequired) -> Response:
    target = f"{PREFIX}/login?next={quote(exc.next_url, safe='')}"
    if is_htmx(request):  # a fragment request cannot show a login form in place
        return Response(status_code=204, headers={"HX-Redirect": target})
    return RedirectResponse(target, status_code=303)


def error_page(request: Request, status: int, title: str, message: str) -> Response:
    return page(
        request,
        "error.html",
        getattr(request.state, "viewer", None),
        status_code=status,
        title=title,
        message=message,
    )


def _status_page(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        return _login(request, exc)
    if isinstance(exc, RequestValidationError):
        in_path = any(problem.get("loc", ("",))[0] == "path" for problem in exc.errors())
        if in_path:
            return error_page(request, 404, "Not found", NOT_FOUND)
        problems = "; ".join(
            f"{problem['loc'][-1]}: {errors.problem_message(problem)}"
            for problem in exc.errors()[:5]
        )
        return error_page(request, 400, "Bad request", problems)
    if isinstance(exc, HTTPException):  # e.g. a streamed body that passed its limit
        response = error_page(request, exc.status_code, "Cannot do that", str(exc.detail))
        response.headers.update(exc.headers or {})
        return response
    if isinstance(exc, errors.NotFound | errors.NotOwner):
        return error_page(request, 404, "Not found", NOT_FOUND)
    if isinstance(exc, errors.PromptLooperError):
        status = errors.http_status(exc)
        title = "Not allowed" if status == 403 else "Cannot do that"
        return error_page(request, status if status != 500 else 400, title, exc.message)
    logger.exception("unhandled error on %s", request.url.path, exc_info=exc)
    return error_page(request, 500, "Something went wrong", "The server could not show this page.")


class PageRoute(APIRoute):
    """A route whose failures are pages (see the module docstring)."""

    def get_route_handler(self) -> Callable[[Request], Awaitable[Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except Exception as exc:
                return _status_page(request, exc)

        return route
