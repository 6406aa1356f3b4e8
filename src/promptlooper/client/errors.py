"""The SDK's errors: ``APIError``, with one subclass per kind of refusal so callers can catch
exactly what they handle (``except NotFoundError``) or everything (``except APIError``)."""

from __future__ import annotations

from typing import Any

import httpx

REQUEST_PARTS = frozenset({"body", "query", "path"})


def detail_text(detail: Any) -> str:
    """A refusal's ``detail`` as a line to read: a list of validation problems (``{loc, msg,
    type}``) as ``field: message`` each, without the request part (``body``) a caller did not
    write, and without naming a field twice where the message names it already."""
    if isinstance(detail, str):
        return detail
    if not isinstance(detail, list) or not all(isinstance(p, dict) for p in detail):
        return str(detail)
    lines = []
    for problem in detail:
        loc = [str(part) for part in problem.get("loc", ())]
        field = ".".join(loc[1:] if loc and loc[0] in REQUEST_PARTS else loc)
        message = str(problem.get("msg", ""))
        named = not field or message.startswith(f"{field}: ")
        lines.append(message if named else f"{field}: {message}")
    return "; ".join(lines)


class APIError(Exception):
    """The server refused a request (``status_code`` and its ``detail``), or could not be
    reached (``status_code`` None)."""

    def __init__(self, status_code: int | None, detail: str) -> None:
        super().__init__(f"{status_code}: {detail}" if status_code else detail)
        self.status_code = status_code
        self.detail = detail


class APIConnectionError(APIError):
    """The server could not be reached (refused, timed out, TLS failed); ``status_code`` is
    None and the message names the URL, so a caller need not know which HTTP library the SDK
    uses to handle it."""


def unreachable(exc: httpx.TransportError) -> APIConnectionError:
    try:
        url = str(exc.request.url)
    except RuntimeError:  # an error raised before any request was built
        url = "the server"
    return APIConnectionError(None, f"cannot reach {url}: {exc or type(exc).__name__}")


class BadRequestError(APIError):
    """400: the request cannot be carried out (an unsupported model, no gradients to apply)."""


class AuthenticationError(APIError):
    """401: missing or invalid credentials."""


class PermissionDeniedError(APIError):
    """403: the resource belongs to someone else."""


class NotFoundError(APIError):
    """404."""


class ConflictError(APIError):
    """409."""


class ValidationError(APIError):
    """422: the body does not match the schema; ``detail`` names the field."""


class RateLimitError(APIError):
    """429."""


class ServerError(APIError):
    """5xx."""


_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: ValidationError,
    429: RateLimitError,
}


def error_for(status_code: int, detail: str) -> APIError:
    cls = _BY_STATUS.get(status_code, ServerError if status_code >= 500 else APIError)
    return cls(status_code, detail)
