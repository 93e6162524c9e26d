"""cartlib.store.metrics: each checkout counted once by outcome."""

from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cartlib.store import metrics
from cartlib.store.errors import Conflict, EmptyCart, StoreUnavailable
from cartlib.store.keys import Keys
from cartlib.store.orders import (
    FinishedCheckout,
    PaymentProcessor,
    PaymentResult,
    PaymentUnavailable,
)
from cartlib.store.stores import Stores
from cartlib.web.metrics import exposition
from checkout.payments import TestProcessor
from tests.cartlib.conftest import StockItem

SESSION = "session-0001"
REPLAYS = "replays"


def counts() -> dict[str, float]:
    """Every checkout outcome's count, and the replays."""
    values = {
        outcome: REGISTRY.get_sample_value("cartlib_checkouts_total", {"outcome": outcome})
        for outcome in metrics.CHECKOUT_OUTCOMES
    }
    values[REPLAYS] = REGISTRY.get_sample_value("cartlib_checkout_replays_total")
    assert None not in values.values(), values
    return {name: value or 0.0 for name, value in values.items()}


def counted_since(before: dict[str, float]) -> dict[str, float]:
    """What was counted since `before`, without the zeros."""
    return {name: value - before[name] for name, value in counts().items() if value != before[name]}


async def checkout(
    stores: Stores,
    token: str = "tok_visa",
    key: str | None = None,
    processor: PaymentProcessor | None = None,
) -> FinishedCheckout:
    return await stores.orders.checkout(
        SESSION,
        payment_token=token,
        processor=processor or TestProcessor(),
        idempotency_key=key,
    )


def test_every_checkout_outcome_is_exported_from_the_start() -> None:
    exported = exposition().decode()
    for outcome in ("paid", "empty", "insufficient_stock", "declined", "error"):
        assert f'cartlib_checkouts_total{{outcome="{outcome}"}}' in exported
    assert "cartlib_checkout_replays_total " in exported


async def test_a_paid_checkout_counts_once_with_its_value(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=5, price_cents=1299)
    await stores.carts.add(SESSION, "mug", 2)
    value_count = REGISTRY.get_sample_value("cartlib_order_value_cents_count") or 0.0
    value_sum = REGISTRY.get_sample_value("cartlib_order_value_cents_sum") or 0.0
    before = counts()

    assert (await checkout(stores)).status_code == 200

    assert counted_since(before) == {"paid": 1}
    assert REGISTRY.get_sample_value("cartlib_order_value_cents_count") == value_count + 1
    assert REGISTRY.get_sample_value("cartlib_order_value_cents_sum") == value_sum + 2 * 1299


async def test_an_empty_cart_counts_once(stores: Stores) -> None:
    before = counts()
    with pytest.raises(EmptyCart):
        await checkout(stores)
    assert counted_since(before) == {"empty": 1}


async def test_a_declined_payment_counts_once(stores: Stores, stock_item: StockItem) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before = counts()
    assert (await checkout(stores, token="tok_declined")).status_code == 402
    assert counted_since(before) == {"declined": 1}


async def test_missing_stock_counts_once(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 3)
    await raw_redis.hset(Keys().stock, "mug", 1)
    before = counts()
    assert (await checkout(stores, key="key-1")).status_code == 409
    assert counted_since(before) == {"insufficient_stock": 1}


async def test_an_unavailable_payment_service_counts_as_an_error(
    stores: Stores, stock_item: StockItem
) -> None:
    class DownProcessor:
        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            raise PaymentUnavailable("connection refused")

    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before = counts()
    with pytest.raises(StoreUnavailable):
        await checkout(stores, processor=DownProcessor())
    assert counted_since(before) == {"error": 1}


async def test_a_reservation_that_timed_out_counts_as_an_error(
    stores: Stores, stock_item: StockItem
) -> None:
    class SlowProcessor:
        """Pays only after the reservation has been given back (as if it took minutes)."""

        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            await stores.orders.release_expired(now_ms=2**62)
            return PaymentResult(approved=True)

    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before = counts()
    with pytest.raises(Conflict):
        await checkout(stores, processor=SlowProcessor())
    assert counted_since(before) == {"error": 1}


@pytest.mark.parametrize("token", ["tok_visa", "tok_declined"])
async def test_a_replay_is_not_counted_again(
    stores: Stores, stock_item: StockItem, token: str
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before = counts()
    first = await checkout(stores, token=token, key="key-1")
    again = await checkout(stores, token=token, key="key-1")
    assert again.status_code == first.status_code
    outcome = "paid" if token == "tok_visa" else "declined"
    assert counted_since(before) == {outcome: 1, REPLAYS: 1}


async def test_a_retry_while_the_first_runs_is_not_counted_again(
    stores: Stores, stock_item: StockItem
) -> None:
    """The retry finishes the same checkout (see test_orders): one checkout, one replay."""
    release = asyncio.Event()

    class WaitingProcessor(TestProcessor):
        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            await release.wait()
            return await super().charge(amount_cents=amount_cents, token=token, reference=reference)

    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before = counts()
    payments = WaitingProcessor()
    first = asyncio.create_task(checkout(stores, key="k", processor=payments))
    await asyncio.sleep(0.05)
    second = asyncio.create_task(checkout(stores, key="k", processor=payments))
    await asyncio.sleep(0.05)
    release.set()
    assert (await first).status_code == (await second).status_code == 200
    assert payments.charges == 1
    assert counted_since(before) == {"paid": 1, REPLAYS: 1}
