"""The findings of issue 11, each as the interleaving that showed it, against a real Redis:
an admin's absolute stock set made while a checkout was being paid, a declined checkout's
lines restored into a cart that changed meanwhile, an Idempotency-Key reused with another
request or after a 409, and what declined checkouts leave behind. (The random schedules of
`test_interleavings.py` cover every other order of the same events.)

Only the public API and the key layout of docs/design.md are used, so the tests read the same
against the version before the fixes, which each of them failed.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

import orjson
import pytest
from redis.asyncio import Redis

from cartlib.store.errors import CartError, Conflict, IdempotencyKeyReused, TooManyDeclines
from cartlib.store.keys import Keys
from cartlib.store.orders import FinishedCheckout, PaymentResult
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn
from checkout.payments import TestProcessor
from tests.cartlib.conftest import StockItem, make_settings

SESSION = "session-0001"


class HeldPayment(TestProcessor):
    """The test processor, which runs `meanwhile` (other requests) before it answers."""

    def __init__(self, meanwhile: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self.meanwhile = meanwhile

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        await self.meanwhile()
        return await super().charge(amount_cents=amount_cents, token=token, reference=reference)


async def pay(
    stores: Stores,
    token: str = "tok_visa",
    key: str | None = None,
    processor: TestProcessor | None = None,
    session_id: str = SESSION,
) -> FinishedCheckout:
    return await stores.orders.checkout(
        session_id,
        payment_token=token,
        processor=processor or TestProcessor(),
        idempotency_key=key,
    )


async def shown_stock(stores: Stores, item_id: str) -> int:
    stock: int = orjson.loads(await stores.catalog.get_json(item_id))["stock"]
    return stock


async def cart_of(stores: Stores, session_id: str = SESSION) -> dict[str, int]:
    return {
        line["id"]: line["quantity"] for line in orjson.loads(await stores.carts.get(session_id))
    }


async def set_stock(stores: Stores, item_id: str, units: int) -> None:
    await stores.catalog.put(item_id, ItemIn(name=item_id.title(), price_cents=1000, stock=units))


# --- 1. stock: an admin's absolute set is never undone or counted twice -------------------


async def test_a_checkout_declined_after_an_admin_set_leaves_the_admins_figure(
    stores: Stores, stock_item: StockItem
) -> None:
    """The finding: 55 after setting 50. The set counts the units the checkout holds (they
    are on hand, not sold); the decline gives back the reservation, not 5 more units."""
    await stock_item("mug", stock=60)
    await stores.carts.add(SESSION, "mug", 5)

    async def admin_sets_fifty() -> None:
        await set_stock(stores, "mug", 50)
        assert await shown_stock(stores, "mug") == 45  # 5 of the 50 held by the checkout

    response = await pay(stores, "tok_declined", processor=HeldPayment(admin_sets_fifty))

    assert response.status_code == 402
    assert await shown_stock(stores, "mug") == 50
    assert await cart_of(stores) == {"mug": 5}
    assert (await pay(stores)).status_code == 200
    assert await shown_stock(stores, "mug") == 45


async def test_a_checkout_paid_after_an_admin_set_takes_its_units_from_the_set(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=60)
    await stores.carts.add(SESSION, "mug", 5)

    async def admin_sets_fifty() -> None:
        await set_stock(stores, "mug", 50)

    response = await pay(stores, processor=HeldPayment(admin_sets_fifty))

    assert response.status_code == 200
    assert await shown_stock(stores, "mug") == 45  # 50 on hand, 5 of them sold


async def test_a_checkout_expired_by_the_reaper_after_an_admin_set_leaves_the_figure(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=60)
    await stores.carts.add(SESSION, "mug", 5)

    async def set_then_expire() -> None:
        await set_stock(stores, "mug", 50)
        assert await stores.orders.release_expired(now_ms=10**15) == 1

    with pytest.raises(CartError) as expired:
        await pay(stores, processor=HeldPayment(set_then_expire))

    assert isinstance(expired.value, Conflict)  # 409
    assert await shown_stock(stores, "mug") == 50


async def test_units_an_admin_removed_while_they_were_being_paid_are_not_sold(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    """An admin sets what is on hand below what a pending checkout holds: its payment comes
    back approved, but the units are not there. The order is not paid (409; logged for a
    refund), and the units on hand never go below 0."""
    await stock_item("mug", stock=10)
    await stores.carts.add(SESSION, "mug", 5)

    async def admin_sets_two() -> None:
        await set_stock(stores, "mug", 2)
        assert await shown_stock(stores, "mug") == 0

    response = await pay(stores, key="k", processor=HeldPayment(admin_sets_two))

    assert response.status_code == 409
    assert "stock changed while the payment was processed" in orjson.loads(response.body)["detail"]
    assert await shown_stock(stores, "mug") == 2
    assert int(await raw_redis.hget(Keys().stock, "mug") or 0) == 2
    assert await raw_redis.xlen(Keys().orders_stream) == 0
    assert await cart_of(stores) == {"mug": 5}
    assert await pay(stores, key="k") == response  # remembered: the payment went through


async def test_concurrent_admin_sets_and_declined_checkouts_never_create_units(
    stores: Stores, stock_item: StockItem
) -> None:
    """The finding's own measure: 40 tries of a set to 50 while a checkout holding 5 units is
    declined; after each, the stock is 50 (it was 55 in 20 of 40)."""
    await stock_item("mug", stock=50)
    above = 0
    for attempt in range(40):
        session = f"try-{attempt}"
        await stores.carts.add(session, "mug", 5)
        declined = asyncio.create_task(pay(stores, "tok_declined", session_id=session))
        for _ in range(attempt % 4):
            await asyncio.sleep(0)
        await set_stock(stores, "mug", 50)
        assert (await declined).status_code == 402
        above += await shown_stock(stores, "mug") > 50
        await stores.carts.remove(session, "mug")
    assert above == 0


# --- 2. caps: lines restored after a declined checkout stay within them --------------------


async def test_a_declined_checkout_restores_lines_within_the_caps(
    redis_url: str, stock_item: StockItem, caplog: pytest.LogCaptureFixture
) -> None:
    """While the checkout holds the cart's lines the cart is empty, so adds succeed; the
    decline used to put the lines back with increments (198 units on a line capped at 99,
    201 lines in a cart capped at 200). Now each line is clamped to the line cap, and lines
    that would exceed the line-count cap stay out (their units go back to stock)."""
    stores = Stores.from_settings(make_settings(redis_url, cart_max_quantity=3, cart_max_lines=2))
    try:
        for item in ("mug", "cap", "pen"):
            await stock_item(item, stock=20)
        await stores.carts.add(SESSION, "mug", 3)
        await stores.carts.add(SESSION, "cap", 1)

        async def refill_the_cart() -> None:
            assert await cart_of(stores) == {}
            await stores.carts.add(SESSION, "mug", 2)
            await stores.carts.add(SESSION, "pen", 1)

        with caplog.at_level(logging.INFO, logger="storefront.orders"):
            response = await pay(
                stores, "tok_declined", key="k", processor=HeldPayment(refill_the_cart)
            )

        assert response.status_code == 402
        assert await cart_of(stores) == {"mug": 3, "pen": 1}  # mug 2 + 3 clamped; cap left out
        body = orjson.loads(response.body)
        assert body["detail"] == "Payment declined: card declined"
        assert sorted(body["not_restored"], key=lambda line: line["id"]) == [
            {"id": "cap", "quantity": 1},
            {"id": "mug", "quantity": 2},
        ]
        assert await pay(stores, "tok_declined", key="k") == response  # replayed as answered
        [logged] = [r.__dict__["left_out"] for r in caplog.records if "fit" in r.message]
        assert orjson.loads(logged) == [{"id": "cap", "quantity": 1}, {"id": "mug", "quantity": 2}]
        for item in ("mug", "cap", "pen"):
            assert await shown_stock(stores, item) == 20
        assert (await pay(stores)).status_code == 200
    finally:
        await stores.aclose()


# --- 3. Idempotency-Key: bound to its request; a 409 for stock is not remembered -----------


async def test_a_key_reused_with_another_payment_is_refused(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    """It replayed the first answer, whatever the new request said."""
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    declined = await pay(stores, "tok_declined", key="key-1")
    assert declined.status_code == 402
    assert "not_restored" not in orjson.loads(declined.body)  # everything fit

    with pytest.raises(CartError) as refused:
        await pay(stores, "tok_visa", key="key-1")
    assert isinstance(refused.value, IdempotencyKeyReused)  # 422
    assert "different request" in refused.value.detail

    assert await pay(stores, "tok_declined", key="key-1") == declined  # same request: replay
    paid = await pay(stores, "tok_visa", key="key-2")
    assert paid.status_code == 200
    with pytest.raises(CartError):
        await pay(stores, "tok_declined", key="key-2")
    assert await pay(stores, "tok_visa", key="key-2") == paid
    assert await shown_stock(stores, "mug") == 4
    assert await raw_redis.xlen(Keys().orders_stream) == 1


async def test_an_insufficient_stock_answer_is_not_remembered_for_its_key(
    stores: Stores, stock_item: StockItem
) -> None:
    """Nothing was reserved or charged, so a retry after a restock is a new attempt; it was
    the 409 again for 24 h."""
    await stock_item("mug", stock=2)
    await stores.carts.add(SESSION, "mug", 2)
    await set_stock(stores, "mug", 1)
    assert (await pay(stores, key="key-1")).status_code == 409
    await set_stock(stores, "mug", 50)
    again = await pay(stores, key="key-1")
    assert again.status_code == 200, again.body
    assert await pay(stores, key="key-1") == again
    assert await shown_stock(stores, "mug") == 48


# --- 7. what declined checkouts hold and leave behind -------------------------------------


async def test_a_session_whose_payments_keep_being_declined_is_told_to_wait(
    redis_url: str, stock_item: StockItem
) -> None:
    """Every declined checkout held the cart's units for its payment call, with no limit per
    session. After CHECKOUT_MAX_DECLINES declines within the window, 429 with Retry-After,
    before any stock is reserved; other sessions are not affected."""
    stores = Stores.from_settings(
        make_settings(redis_url, checkout_max_declines=3, checkout_decline_window_seconds=600)
    )
    try:
        await stock_item("mug", stock=5)
        await stores.carts.add(SESSION, "mug", 1)
        for attempt in range(3):
            assert (await pay(stores, "tok_declined", key=f"k{attempt}")).status_code == 402
        with pytest.raises(CartError) as refused:
            await pay(stores, "tok_visa")
        assert isinstance(refused.value, TooManyDeclines)  # 429
        assert 590 <= (refused.value.retry_after_seconds or 0) <= 600
        assert await cart_of(stores) == {"mug": 1}
        assert await shown_stock(stores, "mug") == 5
        await stores.carts.add("session-other", "mug", 1)
        assert (await pay(stores, session_id="session-other")).status_code == 200
    finally:
        await stores.aclose()


async def test_a_declined_checkout_leaves_no_order_behind(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    """Each declined checkout left its order hash (about 1 KB with a full cart) for 24 h.
    Now it leaves its key's remembered 402 (when it had a key) and the session's decline
    counter, nothing else."""
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before: set[bytes] = set(await raw_redis.keys("*"))  # type: ignore[arg-type]
    assert (await pay(stores, "tok_declined")).status_code == 402
    after: set[bytes] = set(await raw_redis.keys("*"))  # type: ignore[arg-type]
    left = {key.decode() for key in after - before}
    assert left == {f"sf:declines:{{{SESSION}}}"}  # the key layout of docs/design.md
