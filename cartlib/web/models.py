"""The JSON shapes of the HTTP API, as pydantic models (they also document the OpenAPI schema).

Request models forbid unknown fields and use strict types, so `"2"` is not a quantity.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

ItemId = Annotated[
    str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$", strict=True)
]
OrderId = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{32}$")]
PaymentToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{1,128}$", strict=True)]


class RequestModel(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class ItemRef(RequestModel):
    id: ItemId


class AddToCart(RequestModel):
    item: ItemRef
    quantity: int = Field(default=1, description="Units to add; at most CART_MAX_QUANTITY.")


class SetQuantity(RequestModel):
    quantity: int = Field(description="The line's new quantity; 0 removes the line.")


class LegacyAddToCart(RequestModel):
    item: ItemRef


class ItemIn(RequestModel):
    name: Annotated[str, StringConstraints(min_length=1, max_length=200, strip_whitespace=True)]
    price_cents: int = Field(ge=0, le=100_000_000)
    stock: int = Field(ge=0, le=1_000_000_000)


class Payment(RequestModel):
    token: PaymentToken = Field(
        description="A payment token; the test processor knows "
        "`tok_visa` (approved) and `tok_declined` (declined)."
    )


class CheckoutRequest(RequestModel):
    payment: Payment


class CartLine(BaseModel):
    id: str
    quantity: int


class Cart(BaseModel):
    session_id: str
    items: list[CartLine]


class CartLineChange(BaseModel):
    """A cart write's answer: the line it changed, not the whole cart, so that a write costs
    the same in a big cart as in a small one (`GET /cart` returns the whole cart)."""

    session_id: str
    line: CartLine = Field(description="The line now; quantity 0 when it was removed.")
    line_count: int = Field(description="Distinct items in the cart after the change.")


class LegacyCart(BaseModel):
    message: str
    cart: list[CartLine]


class Item(BaseModel):
    id: str
    name: str
    price_cents: int
    stock: int


class ItemList(BaseModel):
    items: list[Item]


class NewSession(BaseModel):
    token: str
    session_id: str
    expires_at: int = Field(description="Unix time (seconds) when the token expires.")


class OrderLine(BaseModel):
    id: str
    quantity: int
    price_cents: int


class Order(BaseModel):
    id: str
    items: list[OrderLine]
    total_cents: int
    status: str


class CheckoutResponse(BaseModel):
    message: str
    order: Order


class ErrorBody(BaseModel):
    detail: str


class CheckoutRefusal(ErrorBody):
    """A checkout refused after its cart was taken (402 declined, 409 after the payment): the
    lines are back in the cart, within its caps."""

    not_restored: list[CartLine] | None = Field(
        default=None,
        description="Units that did not fit back into the cart, which had changed meanwhile "
        "(a line holds at most CART_MAX_QUANTITY units, a cart CART_MAX_LINES lines): they "
        "are left out, back in stock. Absent when everything fit.",
    )


class ValidationIssue(BaseModel):
    """One of FastAPI's validation errors (it may add `input`, `ctx` and `url`)."""

    model_config = ConfigDict(extra="allow")

    loc: list[str | int]
    msg: str
    type: str


class UnprocessableBody(BaseModel):
    """A 422: a request that breaks a limit (a message) or does not validate (a list)."""

    detail: str | list[ValidationIssue]
