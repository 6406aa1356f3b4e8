"""Rendering pages: one autoescaping Jinja2 environment, whole pages or htmx fragments, and the
one-time notice a page shows after an action ("Variant careful-v2 activated")."""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup

from promptlooper import __version__
from promptlooper.online import display
from promptlooper.web.session import CSRF_FIELD, CSRF_HEADER, PREFIX, Viewer

HERE = Path(__file__).parent
NOTICE_COOKIE = "pl_notice"
CONTENT_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
"""Pages run only this server's scripts: text that slipped through escaping could still not
run, and no other site can frame a page to trick a click."""

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default_for_string=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _number(value: float | int | None, digits: int = 3) -> str:
    """A number with a fixed count of decimals, or an en dash when there is none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:,.{digits}f}"


def _when(value: str | datetime) -> Markup:
    """A moment as people read it, in UTC to the second, in a ``<time>`` element whose
    ``datetime`` keeps the exact ISO value for machines; the API's ISO strings carry
    microseconds and an offset nobody needs to read. A naive value is UTC, as stored."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    moment = moment.astimezone(UTC)
    return Markup('<time datetime="{}">{}</time>').format(
        moment.isoformat(), moment.strftime("%Y-%m-%d %H:%M:%S UTC")
    )


def _query(request: Request, **changes: Any) -> str:
    """This page's query string with some parameters changed (None removes one): links that
    sort, filter or page keep the rest of the view."""
    params = [(k, v) for k, v in request.query_params.multi_items() if k not in changes]
    for key, value in changes.items():
        if value is None:
            continue
        if isinstance(value, list | tuple):
            params.extend((key, str(v)) for v in value)
        else:
            params.append((key, str(value)))
    return "?" + urlencode(params) if params else request.url.path


templates.filters["number"] = _number
templates.filters["chance"] = display.chance
templates.filters["mean"] = display.mean
templates.filters["when"] = _when
templates.globals.update(
    PREFIX=PREFIX,
    CSRF_FIELD=CSRF_FIELD,
    CSRF_HEADER=CSRF_HEADER,
    version=__version__,
    query=_query,
)


def is_htmx(request: Request) -> bool:
    """An htmx request wants the fragment, not the whole page (unless it is a history restore)."""
    return (
        request.headers.get("HX-Request") == "true"
        and request.headers.get("HX-History-Restore-Request") != "true"
    )


def _signature(request: Request, text: str) -> str:
    key = request.app.state.auth_config.jwt_secret.encode()
    return hmac.new(key, b"notice:" + text.encode(), hashlib.sha256).hexdigest()[:32]


def take_notice(request: Request) -> str | None:
    """The notice the previous action left, when this server signed it."""
    signature, _, encoded = request.cookies.get(NOTICE_COOKIE, "").partition(".")
    try:
        text = base64.urlsafe_b64decode(encoded.encode()).decode()
    except ValueError:
        return None
    if text and hmac.compare_digest(signature, _signature(request, text)):
        return text
    return None


def page(
    request: Request,
    template: str,
    viewer: Viewer | None = None,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``template``; a template that extends ``layout.html`` renders only its content
    block for htmx."""
    notice = take_notice(request)
    html = templates.get_template(template).render(
        request=request,
        viewer=viewer,
        user=viewer.principal if viewer else None,
        csrf=viewer.csrf if viewer else "",
        partial=is_htmx(request),
        notice=notice,
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if notice is not None:
        response.delete_cookie(NOTICE_COOKIE, path="/")
    response.headers["Cache-Control"] = "no-store"
    response.headers["Content-Security-Policy"] = CONTENT_POLICY
    return response


def redirect(request: Request, url: str, notice: str | None = None) -> RedirectResponse:
    """After a successful action: go to ``url`` and say there what changed (303, so a reload
    does not repeat the action). htmx follows it too and swaps in the page it lands on."""
    response = RedirectResponse(url, status_code=303)
    if notice:
        text = " ".join(notice.split())[:300]
        response.set_cookie(
            NOTICE_COOKIE,
            f"{_signature(request, text)}.{base64.urlsafe_b64encode(text.encode()).decode()}",
            path="/",
            httponly=True,
            samesite="lax",
            max_age=60,
        )
    return response
