"""Errors raised by cartlib. Each carries the HTTP status a service answers with.

CartError
├── BadRequest (400)
│   └── EmptyCart
├── Unauthorized (401)
│   └── InvalidSession
├── Forbidden (403)
├── PaymentDeclined (402)
├── NotFound (404)
│   ├── ItemNotFound
│   └── OrderNotFound
├── Conflict (409)
│   ├── InsufficientStock
│   ├── CheckoutInProgress
│   └── CheckoutExpired
├── PayloadTooLarge (413)
├── UnsupportedMediaType (415)
├── LimitExceeded (422)
│   ├── QuantityLimitExceeded
│   └── TooManyLines
├── IdempotencyKeyReused (422)  the key was first sent with another request
├── TooManyDeclines (429)   the session's checkouts were declined too often lately
├── StoreError (500)        Redis answered something cartlib did not expect
└── StoreUnavailable (503)  Redis is down, slow, loading or read-only
    └── NotReplicated       a paid order that too few replicas confirmed (WAIT)
"""

from __future__ import annotations


class CartError(Exception):
    status_code = 500
    detail = "Internal server error"
    # Sent as Retry-After when set.
    retry_after_seconds: int | None = None

    def __init__(self, detail: str | None = None) -> None:
        self.detail = detail or type(self).detail
        super().__init__(self.detail)


class BadRequest(CartError):
    status_code = 400
    detail = "Bad request"


class EmptyCart(BadRequest):
    detail = "There are no items in your cart!"


class Unauthorized(CartError):
    status_code = 401
    detail = "Not authenticated"


class InvalidSession(Unauthorized):
    detail = "Invalid or expired session token"


class PaymentDeclined(CartError):
    status_code = 402
    detail = "Payment declined"


class Forbidden(CartError):
    status_code = 403
    detail = "Forbidden"


class NotFound(CartError):
    status_code = 404
    detail = "Not found"


class ItemNotFound(NotFound):
    detail = "Item not found"


class OrderNotFound(NotFound):
    detail = "Order not found"


class Conflict(CartError):
    status_code = 409
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


class PayloadTooLarge(CartError):
    status_code = 413
    detail = "Request body too large"


class UnsupportedMediaType(CartError):
    status_code = 415
    detail = "Send the request body as JSON, with Content-Type: application/json"


class LimitExceeded(CartError):
    status_code = 422
    detail = "Limit exceeded"


class QuantityLimitExceeded(LimitExceeded):
    detail = "Quantity limit exceeded"


class TooManyLines(LimitExceeded):
    detail = "Too many different items in the cart"


class IdempotencyKeyReused(CartError):
    status_code = 422
    detail = (
        "This Idempotency-Key was first used with a different request; a key may only be "
        "retried with the same request. Use a new key for a new request"
    )


class TooManyDeclines(CartError):
    status_code = 429
    detail = "Too many declined payments in this session; try again later"

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__(
            f"Too many declined payments in this session; try again in {retry_after_seconds} s"
        )
        self.retry_after_seconds = retry_after_seconds


class StoreError(CartError):
    detail = "Internal server error"


class StoreUnavailable(CartError):
    status_code = 503
    detail = "The cart store is unavailable; try again shortly"
    retry_after_seconds = 1


class NotReplicated(StoreUnavailable):
    detail = (
        "The order is not confirmed: it is not yet stored safely. Retry with the same "
        "Idempotency-Key to confirm it"
    )
