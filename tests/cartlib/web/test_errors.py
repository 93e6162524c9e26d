"""cartlib.web.errors: the one translation of the store's domain errors to HTTP.

The store's errors carry no status any more; these are the statuses they carried before the
split, so every answer stays what it was (the services and schemathesis tests check the
answers over HTTP).
"""

from __future__ import annotations

import inspect

import httpx
import orjson
import pytest
from fastapi import FastAPI

from cartlib.store import (
    BadRequest,
    CartError,
    CheckoutExpired,
    CheckoutInProgress,
    Conflict,
    EmptyCart,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidSession,
    ItemNotFound,
    LimitExceeded,
    NotFound,
    NotReplicated,
    OrderNotFound,
    PaymentDeclined,
    QuantityLimitExceeded,
    StoreError,
    Stores,
    StoreUnavailable,
    TooManyDeclines,
    TooManyLines,
    Unauthorized,
)
from cartlib.store import errors as store_errors
from cartlib.store.checkout_flow import EXPIRED, OUT_OF_STOCK
from cartlib.web import PayloadTooLarge, UnsupportedMediaType, status_of
from cartlib.web.errors import add_error_handlers
from checkout.payments import TestProcessor
from tests.cartlib.conftest import StockItem

BEFORE_THE_SPLIT: dict[type[CartError], int] = {
    CartError: 500,
    BadRequest: 400,
    EmptyCart: 400,
    Unauthorized: 401,
    InvalidSession: 401,
    PaymentDeclined: 402,
    Forbidden: 403,
    NotFound: 404,
    ItemNotFound: 404,
    OrderNotFound: 404,
    Conflict: 409,
    InsufficientStock: 409,
    CheckoutInProgress: 409,
    CheckoutExpired: 409,
    PayloadTooLarge: 413,
    UnsupportedMediaType: 415,
    LimitExceeded: 422,
    QuantityLimitExceeded: 422,
    TooManyLines: 422,
    IdempotencyKeyReused: 422,
    TooManyDeclines: 429,
    StoreError: 500,
    StoreUnavailable: 503,
    NotReplicated: 503,
}


def test_every_error_answers_the_status_it_had() -> None:
    domain = {
        value
        for value in vars(store_errors).values()
        if inspect.isclass(value) and issubclass(value, CartError)
    }
    assert domain | {PayloadTooLarge, UnsupportedMediaType} == set(BEFORE_THE_SPLIT)
    assert {error: status_of(error) for error in BEFORE_THE_SPLIT} == BEFORE_THE_SPLIT


def test_store_errors_carry_no_status() -> None:
    assert not any(hasattr(error, "status_code") for error in BEFORE_THE_SPLIT)


async def test_checkout_answers_remembered_by_the_store_have_the_web_statuses(
    stores: Stores, stock_item: StockItem
) -> None:
    """A checkout's answer is remembered in Redis with its status, for replays: the same
    status as the web layer gives the error it reports."""
    assert EXPIRED.status_code == status_of(CheckoutExpired)
    assert OUT_OF_STOCK.status_code == status_of(InsufficientStock)
    await stock_item("mug", stock=1)

    await stores.carts.add("session-0001", "mug", 1)
    declined = await stores.orders.checkout(
        "session-0001", payment_token="tok_declined", processor=TestProcessor()
    )
    assert declined.status_code == status_of(PaymentDeclined)

    await stores.catalog.put("mug", _Item(name="Mug", price_cents=100, stock=0))
    short = await stores.orders.checkout(
        "session-0001", payment_token="tok_visa", processor=TestProcessor()
    )
    assert short.status_code == status_of(InsufficientStock)


class _Item:
    def __init__(self, *, name: str, price_cents: int, stock: int) -> None:
        self.name, self.price_cents, self.stock = name, price_cents, stock


def _raising(error: CartError) -> FastAPI:
    app = FastAPI()
    add_error_handlers(app)

    @app.get("/")
    async def fail() -> None:
        raise error

    return app


@pytest.mark.parametrize(
    ("error", "status", "headers", "detail"),
    [
        (InvalidSession(), 401, {"www-authenticate": "Bearer"}, InvalidSession.detail),
        (TooManyDeclines(30), 429, {"retry-after": "30"}, None),
        (StoreUnavailable(), 503, {"retry-after": "1"}, StoreUnavailable.detail),
        (ItemNotFound("Item 'x' not found"), 404, {}, "Item 'x' not found"),
        # A 500 never tells what went wrong inside.
        (StoreError("unexpected reply from a cart script: b'?'"), 500, {}, CartError.detail),
    ],
)
async def test_the_handler_answers_json_with_status_and_headers(
    error: CartError, status: int, headers: dict[str, str], detail: str | None
) -> None:
    transport = httpx.ASGITransport(app=_raising(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/")
    assert response.status_code == status
    assert headers.items() <= response.headers.items()
    assert orjson.loads(response.content) == {"detail": detail or error.detail}
