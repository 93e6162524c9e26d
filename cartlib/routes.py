"""Routes every service serves on top of the operations ones, and OpenAPI helpers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from cartlib.deps import CartDep
from cartlib.endpoints import Endpoints
from cartlib.errors import (
    BadRequest,
    CartError,
    InvalidSession,
    PayloadTooLarge,
    StoreUnavailable,
    UnsupportedMediaType,
)
from cartlib.models import Cart, ErrorBody, UnprocessableBody
from cartlib.responses import JSONBytes


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
        entry = responses.get(error.status_code)
        if entry is None:
            model = (models or {}).get(error.status_code) or (
                UnprocessableBody if error.status_code == 422 else ErrorBody
            )
            responses[error.status_code] = {"model": model, "description": error.detail}
        elif error.detail not in entry["description"]:
            entry["description"] += f"; {error.detail}"
    return responses


SESSION_ERRORS = (InvalidSession, StoreUnavailable)
# What a route with a JSON body answers before it runs: a body that cannot be read (400), one
# over MAX_BODY_BYTES (413), one that is not JSON (415).
BODY_ERRORS = (BadRequest, PayloadTooLarge, UnsupportedMediaType)

cart_router = Endpoints(tags=["cart"], responses=error_responses(*SESSION_ERRORS))


@cart_router.get("/cart", response_model=Cart, response_class=JSONBytes)
async def read_cart(cart: CartDep) -> JSONBytes:
    """The session's cart; an unknown or expired cart is empty."""
    return JSONBytes(cart)
