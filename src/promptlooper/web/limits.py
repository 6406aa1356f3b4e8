"""A request body over its limit, answered as a page rather than the API's JSON.

The body-limit middleware refuses the body unread and calls ``body_too_large``: the new-sweep
form comes back with the reason beside its upload field; any other page says what happened
on the error page. With no body there is no CSRF token to check, and none is needed: the
answer only shows a page, as a GET would.
"""

from __future__ import annotations

import uuid

from fastapi import Request, Response
from starlette.routing import compile_path

from promptlooper.errors import PromptLooperError
from promptlooper.web import sweeps
from promptlooper.web.errors import error_page
from promptlooper.web.session import PREFIX, LoginRequired, Viewer, get_viewer

NEW_SWEEP = compile_path(PREFIX + "/projects/{project_id:uuid}/sweeps/new")[0]


async def _viewer(request: Request) -> Viewer | None:
    """Who sent it, from the session cookie alone (as for a GET: the token is in the body)."""
    try:
        return await get_viewer(Request({**request.scope, "method": "GET"}))
    except LoginRequired:
        return None


async def body_too_large(request: Request, limit: int) -> Response:
    viewer = await _viewer(request)
    request.state.viewer = viewer
    found = NEW_SWEEP.match(request.url.path)
    if viewer is not None and found is not None:
        async with request.app.state.sessionmaker() as session:
            try:
                return await sweeps.too_large_form(
                    request, viewer, session, uuid.UUID(str(found["project_id"])), limit
                )
            except PromptLooperError:
                pass  # not this user's project: the plain refusal below
    return error_page(
        request,
        413,
        "Too large",
        f"What was sent is larger than {sweeps.mib(limit)}, the most this page takes; "
        "nothing was saved. Go back and send less.",
    )
