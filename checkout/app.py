"""checkout: orders from the session's cart, paid through a payment processor."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

from fastapi import Depends, FastAPI, Header, Path, Request

from cartlib.settings import Settings
from cartlib.store import (
    CartError,
    CheckoutExpired,
    CheckoutInProgress,
    EmptyCart,
    IdempotencyKeyReused,
    InsufficientStock,
    OrderNotFound,
    PaymentDeclined,
    PaymentProcessor,
    Stores,
    StoreUnavailable,
    TooManyDeclines,
)
from cartlib.web import (
    BODY_ERRORS,
    SESSION_ERRORS,
    CheckoutRefusal,
    CheckoutRequest,
    CheckoutResponse,
    Endpoints,
    JSONBytes,
    Order,
    OrderId,
    SessionDep,
    StoresDep,
    cart_router,
    error_responses,
    request_id_var,
)
from cartlib.web import create_app as create_service
from checkout.payments import TestProcessor

logger = logging.getLogger("storefront.checkout")

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a checkout safely: the first completed response is replayed "
        "for 24 hours, and a checkout that was cut off (503) is finished by its retry, never "
        "started again. Scoped to the session, and bound to the request: the same key with "
        "another payment is 422. A 409 for stock short at the start is not remembered.",
    ),
]


async def get_payments(request: Request) -> PaymentProcessor:
    """The processor given to `create_app` (tests may override this dependency)."""
    payments: PaymentProcessor = request.app.state.payments
    return payments


PaymentsDep = Annotated[PaymentProcessor, Depends(get_payments)]

orders = Endpoints(tags=["checkout"], responses=error_responses(*SESSION_ERRORS))
CHECKOUT_ERRORS = error_responses(
    *BODY_ERRORS,
    EmptyCart,
    PaymentDeclined,
    InsufficientStock,
    CheckoutExpired,
    CheckoutInProgress,
    IdempotencyKeyReused,
    TooManyDeclines,
    models={402: CheckoutRefusal, 409: CheckoutRefusal},
)


@orders.patch(
    "/Cart/checkout",
    response_model=CheckoutResponse,
    response_class=JSONBytes,
    tags=["legacy"],
    summary="The original article's route; the same as POST /checkout",
    responses=CHECKOUT_ERRORS,
)
@orders.post(
    "/checkout",
    response_model=CheckoutResponse,
    response_class=JSONBytes,
    responses=CHECKOUT_ERRORS,
)
async def checkout(
    stores: StoresDep,
    session: SessionDep,
    payments: PaymentsDep,
    body: CheckoutRequest,
    idempotency_key: IdempotencyKey = None,
) -> JSONBytes:
    """Order the whole cart: stock is taken, payment charged, the cart emptied, atomically."""
    result = await stores.orders.checkout(
        session.id,
        payment_token=body.payment.token,
        processor=payments,
        idempotency_key=idempotency_key,
        request_id=request_id_var.get(),
    )
    return JSONBytes(result.body, status_code=result.status_code)


@orders.get(
    "/orders/{order_id}",
    response_model=Order,
    response_class=JSONBytes,
    responses=error_responses(OrderNotFound),
)
async def read_order(
    stores: StoresDep, session: SessionDep, order_id: Annotated[OrderId, Path()]
) -> JSONBytes:
    """An order of this session (any other session's order is 404)."""
    return JSONBytes(await stores.orders.get_json(session.id, order_id))


async def release_expired_checkouts(stores: Stores) -> None:
    """Give back the stock of checkouts abandoned mid-payment (a crashed process)."""
    interval = stores.settings.checkout_timeout_seconds / 2
    while True:
        await asyncio.sleep(interval)
        try:
            released = await stores.orders.release_expired()
        except StoreUnavailable:
            continue
        except CartError:
            # Keep the loop alive: one bad order must not stop every later release.
            logger.exception("releasing expired checkouts failed")
            continue
        if released:
            logger.warning("released expired checkouts", extra={"released": released})


def create_app(
    *,
    payments: PaymentProcessor | None = None,
    settings: Settings | None = None,
    stores: Stores | None = None,
) -> FastAPI:
    """The checkout service, charging through `payments` (default: the built-in
    `TestProcessor`). A deployment with a real provider serves its own factory,
    `lambda: checkout.app.create_app(payments=Provider(...))`, with no edit here. `settings`
    and `stores` go to `cartlib.web.create_app`."""
    app = create_service(
        title="checkout",
        routers=[cart_router, orders],
        background=[release_expired_checkouts],
        settings=settings,
        stores=stores,
    )
    app.state.payments = payments if payments is not None else TestProcessor()
    return app
