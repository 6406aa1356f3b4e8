"""The OpenAPI document tells the truth about errors.

FastAPI documents a 422 only as a list of field problems, but a domain rule that fails after
the schema passed (an unknown provider, a template that does not compile) answers the same
status with a one-line ``detail``; clients generated from the document must accept both.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"


class ErrorMessage(BaseModel):
    """A refusal in one sentence: ``{"detail": "..."}``."""

    detail: str


def document_errors(app: FastAPI) -> None:
    """Describe every 422 as either shape, once, when the document is first built."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            _describe_refusals(generate())  # caches the document in app.openapi_schema
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]


def _describe_refusals(document: dict[str, Any]) -> None:
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas[ErrorMessage.__name__] = ErrorMessage.model_json_schema()
    either = {
        "anyOf": [
            {"$ref": VALIDATION_ERROR},
            {"$ref": f"#/components/schemas/{ErrorMessage.__name__}"},
        ]
    }
    for path in document.get("paths", {}).values():
        for operation in path.values():
            refused = operation.get("responses", {}).get("422")
            if refused is not None:
                refused["description"] = "A field is invalid, or a rule of the request failed"
                refused["content"] = {"application/json": {"schema": either}}
