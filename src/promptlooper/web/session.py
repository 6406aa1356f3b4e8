"""Who is looking at a page: the login session cookie and the CSRF token.

The session cookie holds the same signed, expiring access token the API issues at login, so a
page and the API agree on who a user is, when a session ends and what a deactivated user may
do. The CSRF token is an HMAC of that token under the server's signing secret: it changes with
every login, needs no storage, and a page from another site can neither read nor forge it.
Before login there is no session to bind to, so the login form is a double submit of a random
token kept in its own cookie.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Annotated
from urllib.parse import urlsplit

from fastapi import Depends, Request, Response

from promptlooper.auth import service as auth
from promptlooper.auth.principal import Principal
from promptlooper.errors import Forbidden, PromptLooperError, Unauthenticated

SESSION_COOKIE = "pl_session"
LOGIN_CSRF_COOKIE = "pl_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
PREFIX = "/ui"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class LoginRequired(PromptLooperError):
    """No valid session: the page answers with the login form, then comes back to ``next``."""

    def __init__(self, next_url: str) -> None:
        super().__init__("Log in to see this page")
        self.next_url = next_url


class CsrfRefused(Forbidden):
    """A state-changing request without this session's token: refused, nothing done."""


def _secure(request: Request) -> bool:
    """Cookies are Secure whenever the browser reached us over HTTPS (directly, or through a
    proxy whose X-Forwarded-Proto uvicorn trusts)."""
    return request.url.scheme == "https"


def set_session(request: Request, response: Response, token: str) -> None:
    config: auth.AuthConfig = request.app.state.auth_config
    response.set_cookie(
        SESSION_COOKIE,
        token,
        max_age=config.jwt_expire_minutes * 60,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path=PREFIX)


def end_session(response: Response) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/")


def login_token(request: Request) -> str:
    """The login form's token: the one its cookie already holds, or a new one."""
    return request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)


def keep_login_token(request: Request, response: Response, token: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        path=PREFIX,
        httponly=True,
        samesite="strict",
        secure=_secure(request),
    )


def csrf_for(request: Request, session_token: str) -> str:
    config: auth.AuthConfig = request.app.state.auth_config
    key = config.jwt_secret.encode()
    return hmac.new(key, b"csrf:" + session_token.encode(), hashlib.sha256).hexdigest()


async def _sent_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: Request, expected: str) -> None:
    if request.method in SAFE_METHODS:
        return
    sent = await _sent_token(request)
    if not sent or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise CsrfRefused(
            "This form has expired or did not come from this site. Reload the page and try again."
        )


def safe_next(target: str | None) -> str:
    """Where to go after login: a page of this UI only, never another site."""
    if not target:
        return PREFIX + "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith(PREFIX + "/"):
        return PREFIX + "/"
    if "\\" in target or target.startswith("//"):
        return PREFIX + "/"
    return target


class Viewer:
    """The logged-in user of a page, with the CSRF token its forms carry."""

    __slots__ = ("csrf", "principal")

    def __init__(self, principal: Principal, csrf: str) -> None:
        self.principal = principal
        self.csrf = csrf


async def get_viewer(request: Request) -> Viewer:
    """The page's user, or ``LoginRequired``; state-changing requests must carry the token."""
    token = request.cookies.get(SESSION_COOKIE)
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if not token:
        raise LoginRequired(here if request.method in SAFE_METHODS else PREFIX + "/")
    config: auth.AuthConfig = request.app.state.auth_config
    try:
        async with request.app.state.sessionmaker() as session:
            principal = await auth.principal_from_jwt(session, config, token)
    except Unauthenticated as exc:
        raise LoginRequired(here if request.method in SAFE_METHODS else PREFIX + "/") from exc
    viewer = Viewer(principal, csrf_for(request, token))
    request.state.viewer = viewer  # for the error page, should the request fail
    await check_csrf(request, viewer.csrf)
    return viewer


ViewerDep = Annotated[Viewer, Depends(get_viewer)]
