from __future__ import annotations

import asyncio

import orjson
import pytest
from redis.asyncio import Redis

from cartlib.errors import CheckoutInProgress, EmptyCart, OrderNotFound
from cartlib.keys import Keys
from cartlib.orders import CheckoutResponse, PaymentResult
from cartlib.stores import Stores
from checkout.payments import TestProcessor
from tests.cartlib.conftest import StockItem

SESSION = "session-0001"
processor = TestProcessor()


async def stock_of(raw_redis: Redis, item_id: str) -> int:
    return int(await raw_redis.hget(Keys().stock, item_id) or 0)


async def checkout(
    stores: Stores, session_id: str = SESSION, token: str = "tok_visa", key: str | None = None
) -> CheckoutResponse:
    return await stores.orders.checkout(
        session_id, payment_token=token, processor=processor, idempotency_key=key
    )


async def test_a_paid_checkout_orders_the_cart(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5, price_cents=1299)
    await stock_item("cap", stock=5, price_cents=500)
    await stores.carts.add(SESSION, "mug", 2)
    await stores.carts.add(SESSION, "cap", 1)

    response = await checkout(stores)

    assert response.status_code == 200
    body = orjson.loads(response.body)
    order = body["order"]
    assert body["message"] == "Thanks for shopping with us!"
    assert order["status"] == "paid"
    assert order["total_cents"] == 2 * 1299 + 500
    assert order["items"] == [
        {"id": "cap", "quantity": 1, "price_cents": 500},
        {"id": "mug", "quantity": 2, "price_cents": 1299},
    ]
    assert orjson.loads(await stores.carts.get(SESSION)) == []
    assert await stock_of(raw_redis, "mug") == 3
    assert await stock_of(raw_redis, "cap") == 4
    assert orjson.loads(await stores.orders.get_json(SESSION, order["id"])) == order
    [(_, entry)] = await raw_redis.xrange(Keys().orders_stream)  # type: ignore[misc]
    assert entry[b"order_id"] == order["id"].encode()  # type: ignore[index]
    assert int(entry[b"total_cents"]) == order["total_cents"]  # type: ignore[index]
    assert await raw_redis.zcard(Keys().pending_checkouts) == 0


async def test_an_empty_cart_cannot_be_checked_out(stores: Stores) -> None:
    with pytest.raises(EmptyCart):
        await checkout(stores)


async def test_a_declined_payment_changes_nothing(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 2)
    cart_before = await stores.carts.get(SESSION)

    response = await checkout(stores, token="tok_declined")

    assert response.status_code == 402
    assert "declined" in orjson.loads(response.body)["detail"]
    assert await stores.carts.get(SESSION) == cart_before
    assert await stock_of(raw_redis, "mug") == 5
    assert await raw_redis.xlen(Keys().orders_stream) == 0
    assert await raw_redis.zcard(Keys().pending_checkouts) == 0


async def test_not_enough_stock_changes_nothing(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await stock_item("cap", stock=5)
    await stores.carts.add(SESSION, "mug", 3)
    await stores.carts.add(SESSION, "cap", 1)
    await raw_redis.hset(Keys().stock, "mug", 2)  # sold elsewhere since it was added
    cart_before = await stores.carts.get(SESSION)

    response = await checkout(stores)

    assert response.status_code == 409
    assert "mug (requested 3, available 2)" in orjson.loads(response.body)["detail"]
    assert await stores.carts.get(SESSION) == cart_before
    assert await stock_of(raw_redis, "mug") == 2
    assert await stock_of(raw_redis, "cap") == 5
    assert await raw_redis.xlen(Keys().orders_stream) == 0


@pytest.mark.parametrize("token", ["tok_visa", "tok_declined"])
async def test_a_repeated_idempotency_key_replays_the_first_response(
    stores: Stores, stock_item: StockItem, raw_redis: Redis, token: str
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    first = await checkout(stores, token=token, key="key-1")
    await stores.carts.add(SESSION, "mug", 1)  # a changed cart does not change the replay
    again = await checkout(stores, token="tok_visa", key="key-1")
    assert (again.status_code, again.body) == (first.status_code, first.body)
    assert await raw_redis.xlen(Keys().orders_stream) == (1 if token == "tok_visa" else 0)
    ttl = await raw_redis.ttl(Keys().idempotency(SESSION, "key-1"))
    assert 24 * 3600 - 60 < ttl <= 24 * 3600


async def test_an_insufficient_stock_response_is_replayed_too(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 3)
    await raw_redis.hset(Keys().stock, "mug", 1)
    first = await checkout(stores, key="key-1")
    await raw_redis.hset(Keys().stock, "mug", 50)
    again = await checkout(stores, key="key-1")
    assert first.status_code == again.status_code == 409
    assert again.body == first.body
    assert (await checkout(stores, key="key-2")).status_code == 200


async def test_idempotency_keys_are_scoped_per_session(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add("session-aaaa", "mug", 1)
    await stores.carts.add("session-bbbb", "mug", 1)
    first = await checkout(stores, "session-aaaa", key="same-key")
    second = await checkout(stores, "session-bbbb", key="same-key")
    first_id = orjson.loads(first.body)["order"]["id"]
    assert orjson.loads(second.body)["order"]["id"] != first_id


async def test_an_empty_cart_is_not_remembered_for_its_key(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=5)
    with pytest.raises(EmptyCart):
        await checkout(stores, key="key-1")
    await stores.carts.add(SESSION, "mug", 1)
    assert (await checkout(stores, key="key-1")).status_code == 200


async def test_a_key_still_in_progress_is_a_conflict(stores: Stores, stock_item: StockItem) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    release = asyncio.Event()

    class SlowProcessor:
        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            await release.wait()
            return PaymentResult(approved=True)

    first = asyncio.create_task(
        stores.orders.checkout(
            SESSION, payment_token="tok_visa", processor=SlowProcessor(), idempotency_key="k"
        )
    )
    await asyncio.sleep(0.05)
    with pytest.raises(CheckoutInProgress):
        await checkout(stores, key="k")
    release.set()
    assert (await first).status_code == 200


async def test_concurrent_checkouts_never_oversell(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=10)
    sessions = [f"session-{index:04d}" for index in range(50)]
    for session_id in sessions:
        await stores.carts.add(session_id, "mug", 1)

    responses = await asyncio.gather(*(checkout(stores, session_id) for session_id in sessions))

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 10
    assert statuses.count(409) == 40
    assert await stock_of(raw_redis, "mug") == 0
    assert await raw_redis.xlen(Keys().orders_stream) == 10


async def test_concurrent_checkouts_of_one_cart_make_one_order(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=100)
    await stores.carts.add(SESSION, "mug", 3)

    outcomes = await asyncio.gather(*(checkout(stores) for _ in range(20)), return_exceptions=True)

    paid = [o for o in outcomes if not isinstance(o, BaseException) and o.status_code == 200]
    assert len(paid) == 1
    assert all(isinstance(o, EmptyCart) for o in outcomes if o not in paid)
    assert await stock_of(raw_redis, "mug") == 97
    assert await raw_redis.xlen(Keys().orders_stream) == 1


async def test_an_order_is_visible_only_to_its_session(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    order_id = orjson.loads((await checkout(stores)).body)["order"]["id"]
    with pytest.raises(OrderNotFound):
        await stores.orders.get_json("session-other", order_id)
    with pytest.raises(OrderNotFound):
        await stores.orders.get_json(SESSION, "0" * 32)


async def test_an_abandoned_checkout_gives_its_stock_back(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 2)

    class CrashingProcessor:
        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            raise RuntimeError("the process died mid-payment")

    with pytest.raises(RuntimeError):
        await stores.orders.checkout(
            SESSION, payment_token="tok_visa", processor=CrashingProcessor()
        )
    assert await stock_of(raw_redis, "mug") == 3
    assert await stores.orders.release_expired() == 0  # not yet past the timeout

    far_future_ms = 10**15
    assert await stores.orders.release_expired(now_ms=far_future_ms) == 1
    assert await stock_of(raw_redis, "mug") == 5
    assert orjson.loads(await stores.carts.get(SESSION)) == [{"id": "mug", "quantity": 2}]
    assert await stores.orders.release_expired(now_ms=far_future_ms) == 0
