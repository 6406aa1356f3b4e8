"""``/ui/login`` and ``/ui/logout``: a username and password in, a session cookie out."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from promptlooper.auth import service as auth
from promptlooper.auth.ratelimit import LoginThrottle
from promptlooper.db.deps import SessionDep
from promptlooper.errors import RateLimited, Unauthenticated
from promptlooper.web.errors import PageRoute
from promptlooper.web.render import page, redirect
from promptlooper.web.session import (
    LOGIN_CSRF_COOKIE,
    PREFIX,
    ViewerDep,
    check_csrf,
    end_session,
    keep_login_token,
    login_token,
    safe_next,
    set_session,
)

router = APIRouter(prefix=PREFIX, route_class=PageRoute, include_in_schema=False)

Field = Annotated[str, Form(max_length=1024)]


def _form(
    request: Request, *, next_url: str, username: str = "", error: str = "", status: int = 200
) -> Response:
    token = login_token(request)
    response = page(
        request,
        "login.html",
        status_code=status,
        next_url=safe_next(next_url),
        username=username,
        error=error,
        login_token=token,
    )
    keep_login_token(request, response, token)
    return response


@router.get("/login")
async def login_form(request: Request, next: str = "") -> Response:
    return _form(request, next_url=next)


@router.post("/login")
async def log_in(
    request: Request,
    session: SessionDep,
    username: Field = "",
    password: Field = "",
    next: Field = "",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected:
        return _form(
            request,
            next_url=next,
            username=username,
            error="Your browser did not keep this form's cookie. Enable cookies and try again.",
            status=403,
        )
    await check_csrf(request, expected)
    if not username or not password:
        return _form(
            request,
            next_url=next,
            username=username,
            error="Enter your username and password.",
            status=422,
        )
    throttle: LoginThrottle = request.app.state.login_throttle
    try:
        await throttle.hit(request.client.host if request.client else "unknown", username)
        token = await auth.login(session, request.app.state.auth_config, username, password)
    except (Unauthenticated, RateLimited) as exc:
        status = 429 if isinstance(exc, RateLimited) else 401
        return _form(request, next_url=next, username=username, error=exc.message, status=status)
    await session.commit()
    response = redirect(request, safe_next(next))
    set_session(request, response, token)
    return response


@router.post("/logout")
async def log_out(request: Request, _viewer: ViewerDep) -> Response:
    response = redirect(request, f"{PREFIX}/login", "You are logged out.")
    end_session(response)
    return response
