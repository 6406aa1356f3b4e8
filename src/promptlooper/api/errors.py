"""One JSON error shape, ``{"detail": ...}``, for every failure the API can answer with."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError, IntegrityError

from promptlooper import errors
from promptlooper.values import NUL_IN_TEXT

logger = logging.getLogger(__name__)


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, errors.PromptLooperError)
    headers: dict[str, str] = {}
    if isinstance(exc, errors.Unauthenticated):
        headers["WWW-Authenticate"] = "Bearer"
    if isinstance(exc, errors.RateLimited):
        headers["Retry-After"] = str(exc.retry_after)
    detail = exc.detail() if isinstance(exc, errors.FieldInvalid) else exc.message
    return JSONResponse({"detail": detail}, status_code=errors.http_status(exc), headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    """422 with each problem's field path; the offending input is not echoed back."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": errors.validation_detail(exc.errors())}, status_code=422)


async def _integrity_error(_request: Request, exc: Exception) -> JSONResponse:
    logger.info("integrity error answered as 409: %s", exc)
    return JSONResponse({"detail": "The request conflicts with existing data"}, status_code=409)


UNSTORABLE_TEXT = {"22021", "22P05"}
"""PostgreSQL's SQLSTATEs for text it cannot store (NUL, above all, in text or JSON)."""


async def _database_error(_request: Request, exc: Exception) -> JSONResponse:
    """Text PostgreSQL cannot store is the client's mistake (422; the transaction is rolled
    back with its session, so nothing is half written); any other database failure goes on
    to the 500 of ``_unexpected_error``."""
    assert isinstance(exc, DBAPIError)
    if getattr(exc.orig, "sqlstate", None) not in UNSTORABLE_TEXT:
        raise exc
    return JSONResponse({"detail": NUL_IN_TEXT}, status_code=422)


async def _unexpected_error(_request: Request, exc: Exception) -> JSONResponse:
    logger.exception("unhandled error", exc_info=exc)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(errors.PromptLooperError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(IntegrityError, _integrity_error)
    app.add_exception_handler(DBAPIError, _database_error)
    app.add_exception_handler(Exception, _unexpected_error)
