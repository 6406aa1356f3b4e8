"""Domain exceptions.

Services raise these; the HTTP layer maps each to a status code and the CLI to a one-line
message with exit code 2. Nothing here knows about HTTP.
"""

from __future__ import annotations

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


class Unauthenticated(PromptLooperError):
    """Missing or bad credentials."""


class Forbidden(PromptLooperError):
    """Valid credentials without the right to do this."""


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


NUL_IN_TEXT = "Text must not contain the NUL character (\\u0000)"
"""Why text was refused: PostgreSQL stores NUL in neither text nor JSON."""
