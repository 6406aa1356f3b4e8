"""Domain exceptions.

Services raise these; the HTTP layer answers each with the status ``http_status`` gives it,
and the CLI with a one-line message and exit code 2.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


class PromptLooperError(Exception):
    """Base class: ``message`` is safe to show to the user as is."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class BadRequest(PromptLooperError):
    """The request cannot be carried out as asked (an unsupported model, a step with nothing
    to apply)."""


class BadExample(BadRequest):
    """One example of a training batch cannot be used; ``index`` says which, so that a caller
    that read the batch from a file can name the line."""

    def __init__(self, index: int, reason: str) -> None:
        super().__init__(f"example {index}: {reason}")
        self.index = index
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # it crosses from a training worker process
        return type(self), (self.index, self.reason), self.__dict__


class NotFound(PromptLooperError):
    """The resource does not exist, or the caller may not know that it exists."""


class Conflict(PromptLooperError):
    """The write clashes with existing state (a duplicate name, say)."""


class Invalid(PromptLooperError):
    """The input is well-formed but not acceptable."""


class FieldInvalid(Invalid):
    """One field's value is not acceptable, by a check that needs more than the request
    (a metric's direction in the registry, an agent variant that must exist). ``message``
    names the field first, as a check of a whole body does (the CLI and the web form read it
    so); the API answers in the shape of a validation problem, ``[{loc, msg, type}]``, so that
    a client finds the field in ``loc`` whichever check refused it."""

    def __init__(self, field: str, reason: str, *, source: str = "body") -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.source = source

    def detail(self) -> list[dict[str, Any]]:
        return [
            {
                "loc": [self.source, *field_path(self.field)],
                "msg": self.reason,
                "type": "value_error",
            }
        ]


class Unauthenticated(PromptLooperError):
    """Missing or bad credentials."""


class Forbidden(PromptLooperError):
    """Valid credentials without the right to do this."""


class NotOwner(Forbidden):
    """Valid credentials on another user's resource. The API answers 403; a web page answers
    as if it did not exist, so that browsing cannot reveal what others have."""


class RateLimited(PromptLooperError):
    """Too many attempts; ``retry_after`` says how many seconds to wait."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Unavailable(PromptLooperError):
    """Something the request needs stopped working (a training worker died); trying again
    may succeed."""


class ConfigurationError(PromptLooperError):
    """The process is configured in a way it cannot run with."""


HTTP_STATUS: dict[type[PromptLooperError], int] = {
    BadRequest: 400,
    NotFound: 404,
    Conflict: 409,
    Invalid: 422,
    Unauthenticated: 401,
    Forbidden: 403,
    RateLimited: 429,
    Unavailable: 503,
    ConfigurationError: 503,
}


def http_status(exc: PromptLooperError) -> int:
    """The status the API answers ``exc`` with (500 for one it does not know)."""
    for cls in type(exc).__mro__:
        if cls in HTTP_STATUS:
            return HTTP_STATUS[cls]
    return 500


def field_path(dotted: str) -> list[str | int]:
    """A dotted field path (``variants.0.allocation``) as a ``loc``, list indexes as numbers."""
    return [int(part) if part.isdigit() else part for part in dotted.split(".")]


NAMED_FIELD = re.compile(r"([A-Za-z_][\w-]*(?:\.[\w-]+)*): ")
"""A check of a whole body names its field first, ``variants.0.allocation: ...``."""


FORM_WORDS = "form"
"""Context key of a problem's message as a web form says it: a check of a whole body names
other fields as the API does ("give guardrail_thresholds"), where a form user sees labels.
A 422 and the CLI leave the context out."""


NOT_A_MAPPING = frozenset({"model_type", "model_attributes_type", "dict_type"})
"""The validation library's types for an object that was not given one; its message names
a class ("a valid dictionary or instance of ExperimentCreate")."""
KINDS = {list: "a list", str: "a string", bool: "a boolean", int: "a number", float: "a number"}


def problem_message(problem: Mapping[str, Any]) -> str:
    """A validation problem's message as a user should read it: without the "Value error, "
    the validation library puts before a check's own words, which names an exception class
    and says nothing about the input, nor a class name where an object was expected."""
    if problem.get("type") in NOT_A_MAPPING:
        if "input" not in problem:  # left out where the input must not be echoed
            return "must be a mapping of fields (name: value)"
        given = problem["input"]
        kind = "nothing" if given is None else KINDS.get(type(given), type(given).__name__)
        return f"must be a mapping of fields (name: value), not {kind}"
    return str(problem.get("msg", "is not valid")).removeprefix("Value error, ")


def validation_detail(
    problems: Iterable[Mapping[str, Any]], prefix: Sequence[str | int] = ()
) -> list[dict[str, Any]]:
    """Each validation problem's field path (under ``prefix``), message and type: what a 422
    says, without echoing the offending input back. A check of the whole body (one that
    compares fields) is reported at the body by the validation library; its message names
    the field, and the path is extended with it, so a client finds the field in ``loc``."""
    detail = []
    for p in problems:
        loc = [*prefix, *p.get("loc", ())]
        msg, kind = problem_message(p), p.get("type", "")
        whole_body = kind == "value_error" and all(part == "body" for part in loc)
        if whole_body and (named := NAMED_FIELD.match(msg)):
            loc += field_path(named[1])
        detail.append({"loc": loc, "msg": msg, "type": kind})
    return detail
