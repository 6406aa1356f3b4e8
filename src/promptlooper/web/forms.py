"""Forms checked by the API's own request schemas, with each problem beside its field.

A form is validated by the same Pydantic model the API validates a JSON body with, so a page
accepts exactly what the API accepts; what was typed is kept and shown again on a refusal.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from promptlooper.errors import FORM_WORDS, problem_message
from promptlooper.web.session import CSRF_FIELD

M = TypeVar("M", bound=BaseModel)

FORM_ERROR = "_form"
"""The key of a problem that belongs to the whole form rather than one field."""


async def form_fields(request: Request) -> dict[str, str]:
    """The submitted text fields (the last value of each), without the CSRF token.

    Browsers send a textarea's line breaks as CRLF whatever was typed; they are stored as LF,
    so an untouched prompt saves as it was read."""
    form = await request.form()
    return {
        key: value.replace("\r\n", "\n")
        for key, value in form.multi_items()
        if key != CSRF_FIELD and isinstance(value, str)
    }


def field_errors(problems: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Validation problems keyed by field path (``config.temperature``); the first per field,
    in the form's own words where the check gave them (``FORM_WORDS``)."""
    errors: dict[str, str] = {}
    for problem in problems:
        loc = [str(part) for part in problem.get("loc", ()) if part != "body"]
        key = ".".join(loc) or FORM_ERROR
        errors.setdefault(key, problem.get("ctx", {}).get(FORM_WORDS) or problem_message(problem))
    return errors


def validate(schema: type[M], data: Mapping[str, Any]) -> tuple[M | None, dict[str, str]]:
    """The model, or None and the problems by field."""
    try:
        return schema.model_validate(data), {}
    except ValidationError as exc:
        return None, field_errors(exc.errors())
