"""Routes every service serves on top of the operations ones, and the errors they share."""

from __future__ import annotations

from cartlib.store.errors import BadRequest, InvalidSession, StoreUnavailable
from cartlib.web.deps import CartDep
from cartlib.web.endpoints import Endpoints
from cartlib.web.errors import PayloadTooLarge, UnsupportedMediaType, error_responses
from cartlib.web.models import Cart
from cartlib.web.responses import JSONBytes

SESSION_ERRORS = (InvalidSession, StoreUnavailable)
# What a route with a JSON body answers before it runs: a body that cannot be read (400), one
# over MAX_BODY_BYTES (413), one that is not JSON (415).
BODY_ERRORS = (BadRequest, PayloadTooLarge, UnsupportedMediaType)

cart_router = Endpoints(tags=["cart"], responses=error_responses(*SESSION_ERRORS))


@cart_router.get("/cart", response_model=Cart, response_class=JSONBytes)
async def read_cart(cart: CartDep) -> JSONBytes:
    """The session's cart; an unknown or expired cart is empty."""
    return JSONBytes(cart)
