"""The domain errors of the store. They say what went wrong, never how a protocol answers it:
`cartlib.web.errors` maps each to its HTTP status, in one table.

CartError
├── BadRequest
│   └── EmptyCart
├── Unauthorized
│   └── InvalidSession
├── Forbidden
├── PaymentDeclined
├── NotFound
│   ├── ItemNotFound
│   └── OrderNotFound
├── Conflict
│   ├── InsufficientStock
│   ├── CheckoutInProgress
│   └── CheckoutExpired
├── LimitExceeded
│   ├── QuantityLimitExceeded
│   └── TooManyLines
├── IdempotencyKeyReused   the key was first sent with another request
├── TooManyDeclines        the session's checkouts were declined too often lately
├── StoreError             Redis answered something cartlib did not expect
└── StoreUnavailable       Redis is down, slow, loading or read-only
    └── NotReplicated      a paid order that too few replicas confirmed (WAIT)
"""

from __future__ import annotations


class CartError(Exception):
    detail = "Internal server error"
    # How long to wait before trying again, when waiting helps.
    retry_after_seconds: int | None = None

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or type(self).detail
        super().__init__(self.detail)


class BadRequest(CartError):
    detail = "Bad request"


class EmptyCart(BadRequest):
    detail = "There are no items in your cart!"


class Unauthorized(CartError):
    detail = "Not authenticated"


class InvalidSession(Unauthorized):
    detail = "Invalid or expired session token"


class PaymentDeclined(CartError):
    detail = "Payment declined"


class Forbidden(CartError):
    detail = "Forbidden"


class NotFound(CartError):
    detail = "Not found"


class ItemNotFound(NotFound):
    detail = "Item not found"


class OrderNotFound(NotFound):
    detail = "Order not found"


class Conflict(CartError):
    detail = "Conflict"


class InsufficientStock(Conflict):
    detail = "Not enough stock"


class CheckoutInProgress(Conflict):
    detail = "A checkout with this Idempotency-Key is still in progress"


class CheckoutExpired(Conflict):
    detail = (
        "This checkout took too long and was cancelled; its items are back in the cart. "
        "Start a new checkout, with a new Idempotency-Key"
    )


class LimitExceeded(CartError):
    detail = "Limit exceeded"


class QuantityLimitExceeded(LimitExceeded):
    detail = "Quantity limit exceeded"


class TooManyLines(LimitExceeded):
    detail = "Too many different items in the cart"


class IdempotencyKeyReused(CartError):
    detail = (
        "This Idempotency-Key was first used with a different request; a key may only be "
        "retried with the same request. Use a new key for a new request"
    )


class TooManyDeclines(CartError):
    detail = "Too many declined payments in this session; try again later"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"Too many declined payments in this session; try again in {retry_after_seconds} s"
        )
        self.retry_after_seconds = retry_after_seconds


class StoreError(CartError):
    detail = "Internal server error"


class StoreUnavailable(CartError):
    detail = "The cart store is unavailable; try again shortly"
    retry_after_seconds = 1


class NotReplicated(StoreUnavailable):
    detail = (
        "The order is not confirmed: it is not yet stored safely. Retry with the same "
        "Idempotency-Key to confirm it"
    )
