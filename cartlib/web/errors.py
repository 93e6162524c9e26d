"""The one place the store's domain errors become HTTP answers: the status of each error
class, the JSON error bodies and headers, and the OpenAPI entries that document them.

The store's errors carry no status (`cartlib.store.errors`); `status_of` finds an error's
in `STATUS`, by the nearest class that has one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Final

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from cartlib.store.errors import (
    BadRequest,
    CartError,
    Conflict,
    Forbidden,
    IdempotencyKeyReused,
    LimitExceeded,
    NotFound,
    PaymentDeclined,
    StoreError,
    StoreUnavailable,
    TooManyDeclines,
    Unauthorized,
)
from cartlib.web.models import ErrorBody, UnprocessableBody
from cartlib.web.responses import JSONBytes

logger = logging.getLogger("storefront")


class PayloadTooLarge(CartError):
    """A request body over MAX_BODY_BYTES (refused by `ServiceMiddleware`)."""

    detail = "Request body too large"


class UnsupportedMediaType(CartError):
    """A request body that is not sent as JSON (refused by `Endpoints`)."""

    detail = "Send the request body as JSON, with Content-Type: application/json"


STATUS: Final[Mapping[type[CartError], int]] = MappingProxyType(
    {
        CartError: 500,
        BadRequest: 400,
        Unauthorized: 401,
        PaymentDeclined: 402,
        Forbidden: 403,
        NotFound: 404,
        Conflict: 409,
        PayloadTooLarge: 413,
        UnsupportedMediaType: 415,
        LimitExceeded: 422,
        IdempotencyKeyReused: 422,
        TooManyDeclines: 429,
        StoreError: 500,
        StoreUnavailable: 503,
    }
)


_resolved: dict[type[CartError], int] = {}


def status_of(error: type[CartError]) -> int:
    """The HTTP status of `error`: that of the nearest class in its MRO listed in `STATUS`."""
    status = _resolved.get(error)
    if status is None:
        status = _resolved[error] = next(STATUS[cls] for cls in error.__mro__ if cls in STATUS)
    return status


def error_responses(
    *errors: type[CartError], models: Mapping[int, type[BaseModel]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting the errors a route may answer with.

    Errors with one status share its entry. A documented 422 replaces FastAPI's own (a list
    of validation errors), which the route still answers with, so it documents both shapes.
    `models` gives a status a body with more than `detail`.
    """
    responses: dict[int | str, dict[str, Any]] = {}
    for error in errors:
        status = status_of(error)
        entry = responses.get(status)
        if entry is None:
            model = (models or {}).get(status) or (
                UnprocessableBody if status == 422 else ErrorBody
            )
            responses[status] = {"model": model, "description": error.detail}
        elif error.detail not in entry["description"]:
            entry["description"] += f"; {error.detail}"
    return responses


def add_error_handlers(app: FastAPI) -> None:
    """Answer every error as JSON: domain errors by `STATUS`, validation errors as FastAPI's
    422 (never a 500 for what a body holds), anything else a logged 500."""
    app.add_exception_handler(CartError, _cart_error_response)  # type: ignore[arg-type]
    app.add_exception_handler(
        RequestValidationError,
        _validation_error_response,  # type: ignore[arg-type]
    )
    app.add_exception_handler(Exception, _unexpected_error_response)


def _cart_error_response(_request: Request, exc: CartError) -> JSONResponse:
    status = status_of(type(exc))
    headers: dict[str, str] = {}
    if isinstance(exc, Unauthorized):
        headers["WWW-Authenticate"] = "Bearer"
    elif exc.retry_after_seconds is not None:
        headers["Retry-After"] = str(exc.retry_after_seconds)
    if status >= 500:
        logger.warning("%s: %s", type(exc).__name__, exc.__cause__ or exc.detail)
    detail = exc.detail if status != 500 else CartError.detail
    return JSONResponse({"detail": detail}, status, headers=headers)


async def _validation_error_response(request: Request, exc: RequestValidationError) -> Response:
    content_type = request.headers.get("content-type", "")
    about_body = any(error["loc"][:1] == ("body",) for error in exc.errors())
    if about_body and content_type and "json" not in content_type:
        # FastAPI reports a form-encoded JSON body as a confusing "not a dictionary" error.
        return _cart_error_response(request, UnsupportedMediaType())
    # FastAPI's handler echoes each error's input, and a body may hold NaN or Infinity
    # (`json.loads` accepts them), which Starlette's JSONResponse cannot render: a 500.
    # orjson writes them as null.
    errors = exc.errors()
    try:
        return JSONBytes(orjson.dumps({"detail": jsonable_encoder(errors)}), 422)
    except (orjson.JSONEncodeError, RecursionError):
        # Echoed inputs may be what neither orjson nor FastAPI's encoder can write: nested
        # deeper than orjson's 254 levels or Python's recursion limit, integers over 64 bits,
        # lone surrogates (`"\ud800"`, which `json.loads` accepts). Those were 500s. Leave
        # the inputs out, and let the standard library escape surrogates in `loc`.
        without_inputs = [{k: v for k, v in error.items() if k != "input"} for error in errors]
        return JSONBytes(json.dumps({"detail": jsonable_encoder(without_inputs)}).encode(), 422)


def _unexpected_error_response(request: Request, exc: Exception) -> JSONResponse:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return JSONResponse({"detail": CartError.detail}, 500)
