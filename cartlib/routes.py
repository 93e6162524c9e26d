"""Routes every service serves on top of the operations ones, and OpenAPI helpers."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from cartlib.deps import CartDep
from cartlib.errors import CartError, InvalidSession, StoreUnavailable
from cartlib.models import Cart, ErrorBody
from cartlib.responses import JSONBytes
from cartlib.routing import LeanRoute


def error_responses(*errors: type[CartError]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` documenting the errors a route may answer with."""
    return {
        error.status_code: {"model": ErrorBody, "description": error.detail} for error in errors
    }


SESSION_ERRORS = (InvalidSession, StoreUnavailable)

cart_router = APIRouter(
    route_class=LeanRoute, tags=["cart"], responses=error_responses(*SESSION_ERRORS)
)


@cart_router.get("/cart", response_model=Cart, response_class=JSONBytes)
async def read_cart(cart: CartDep) -> JSONBytes:
    """The session's cart; an unknown or expired cart is empty."""
    return JSONBytes(cart)
