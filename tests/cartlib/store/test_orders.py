from __future__ import annotations

import asyncio
import logging

import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cartlib.store.errors import (
    CheckoutExpired,
    EmptyCart,
    OrderNotFound,
    StoreUnavailable,
)
from cartlib.store.keys import Keys
from cartlib.store.orders import (
    FinishedCheckout,
    PaymentProcessor,
    PaymentResult,
    fingerprint,
    split_record,
)
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn
from checkout.payments import TestProcessor
from tests._redis import RestartableRedis, run_restartable_redis
from tests.cartlib.conftest import StockItem, make_settings

SESSION = "session-0001"
processor = TestProcessor()


async def stock_of(raw_redis: Redis, item_id: str) -> int:
    """Units on hand: not sold yet, reserved ones included."""
    return int(await raw_redis.hget(Keys().stock, item_id) or 0)


async def reserved_of(raw_redis: Redis, item_id: str) -> int:
    return int(await raw_redis.hget(Keys().reserved, item_id) or 0)


async def available_of(stores: Stores, item_id: str) -> int:
    """The stock the API shows: on hand minus reserved."""
    stock: int = orjson.loads(await stores.catalog.get_json(item_id))["stock"]
    return stock


async def checkout(
    stores: Stores,
    session_id: str = SESSION,
    token: str = "tok_visa",
    key: str | None = None,
    processor: PaymentProcessor = processor,
) -> FinishedCheckout:
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
    again = await checkout(stores, token=token, key="key-1")
    assert (again.status_code, again.body) == (first.status_code, first.body)
    assert await raw_redis.xlen(Keys().orders_stream) == (1 if token == "tok_visa" else 0)
    ttl = await raw_redis.ttl(Keys().idempotency(SESSION, "key-1"))
    assert 24 * 3600 - 60 < ttl <= 24 * 3600


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
    assert await available_of(stores, "mug") == 3
    assert (await stock_of(raw_redis, "mug"), await reserved_of(raw_redis, "mug")) == (5, 2)
    assert await stores.orders.release_expired() == 0  # not yet past the timeout

    far_future_ms = 10**15
    assert await stores.orders.release_expired(now_ms=far_future_ms) == 1
    assert await available_of(stores, "mug") == 5
    assert (await stock_of(raw_redis, "mug"), await reserved_of(raw_redis, "mug")) == (5, 0)
    assert orjson.loads(await stores.carts.get(SESSION)) == [{"id": "mug", "quantity": 2}]
    assert await stores.orders.release_expired(now_ms=far_future_ms) == 0


# --- the test processor deduplicates on the reference, as the contract says -------------


async def test_the_test_processor_charges_a_reference_once() -> None:
    payments = TestProcessor()
    first = await payments.charge(amount_cents=500, token="tok_visa", reference="order-1")
    # The same reference again, even with another token or amount: the first result, no charge.
    again = await payments.charge(amount_cents=900, token="tok_declined", reference="order-1")
    assert first == again == PaymentResult(approved=True)
    assert (payments.charges, payments.charged_cents) == (1, 500)

    declined = await payments.charge(amount_cents=500, token="tok_declined", reference="order-2")
    retried = await payments.charge(amount_cents=500, token="tok_visa", reference="order-2")
    assert declined == retried == PaymentResult(approved=False, reason="card declined")
    assert (payments.charges, payments.charged_cents) == (1, 500)

    await payments.charge(amount_cents=700, token="tok_visa", reference="order-3")
    assert (payments.charges, payments.charged_cents) == (2, 1200)


async def test_the_test_processor_forgets_only_its_oldest_references() -> None:
    payments = TestProcessor(remember=2)
    for reference in ("a", "b", "c"):
        await payments.charge(amount_cents=1, token="tok_visa", reference=reference)
    await payments.charge(amount_cents=1, token="tok_visa", reference="c")
    assert payments.charges == 3
    await payments.charge(amount_cents=1, token="tok_visa", reference="a")  # forgotten
    assert payments.charges == 4


# --- a checkout cut off after its charge is finished by a retry of its key --------------


class RecordingProcessor(TestProcessor):
    """The test processor, noting the reference of every charge it is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        self.references.append(reference)
        return await super().charge(amount_cents=amount_cents, token=token, reference=reference)


class StopsRedisAfterTheCharge(RecordingProcessor):
    """Charges, then stops Redis (`docker stop`) before checkout can complete the order:
    the cut-off a failover or a restart makes. Only the first charge."""

    def __init__(self, server: RestartableRedis) -> None:
        super().__init__()
        self.server = server

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        result = await super().charge(amount_cents=amount_cents, token=token, reference=reference)
        if len(self.references) == 1:
            await asyncio.to_thread(self.server.stop)
        return result


class DiesAfterTheCharge(RecordingProcessor):
    """Charges, then raises as a process killed right after the payment would: the order
    stays pending. Only the first charge."""

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        result = await super().charge(amount_cents=amount_cents, token=token, reference=reference)
        if len(self.references) == 1:
            raise RuntimeError("the process died after the charge")
        return result


async def test_a_checkout_cut_off_by_a_redis_stop_after_its_charge_is_finished_by_a_retry() -> None:
    """The bug: Redis went away after the charge and before complete_checkout, the client got
    503, and its retry got 409 "in progress", then (after the reaper) a second checkout and a
    second charge. Here Redis really stops (with AOF, so it comes back with its data): the
    real code path, no mock of Redis. The retry finishes the same order, charged once."""
    with run_restartable_redis("7", args=("--appendonly", "yes")) as server:
        stores = Stores.from_settings(make_settings(server.url))
        raw_redis = Redis.from_url(server.url)
        try:
            await stores.catalog.put("mug", ItemIn(name="Mug", price_cents=1299, stock=5))
            await stores.carts.add(SESSION, "mug", 2)
            payments = StopsRedisAfterTheCharge(server)

            with pytest.raises(StoreUnavailable):
                await checkout(stores, key="k", processor=payments)
            await asyncio.to_thread(server.start)

            [order_id] = payments.references
            key = Keys().idempotency(SESSION, "k")
            record: bytes = await raw_redis.get(key)  # type: ignore[assignment]
            assert split_record(record) == (
                fingerprint("tok_visa").encode(),
                f"pending:{order_id}".encode(),
            )
            assert 24 * 3600 - 60 < await raw_redis.ttl(key) <= 24 * 3600  # not 60 s
            assert await raw_redis.hget(Keys().order(order_id), "status") == b"pending"

            response = await checkout(stores, key="k", processor=payments)

            assert response.status_code == 200, response.body
            assert orjson.loads(response.body)["order"]["id"] == order_id
            assert payments.references == [order_id, order_id]  # charged again, same reference
            assert (payments.charges, payments.charged_cents) == (1, 2 * 1299)  # once
            assert await stock_of(raw_redis, "mug") == 3
            assert await raw_redis.xlen(Keys().orders_stream) == 1
            assert await raw_redis.zcard(Keys().pending_checkouts) == 0
            assert await raw_redis.hget(Keys().order(order_id), "status") == b"paid"
            assert orjson.loads(await stores.carts.get(SESSION)) == []
            again = await checkout(stores, key="k", processor=payments)
            assert again == response
            assert payments.references == [order_id, order_id]  # a replay charges nothing
        finally:
            await raw_redis.aclose()
            await stores.aclose()


@pytest.mark.parametrize("token", ["tok_visa", "tok_declined"])
async def test_a_checkout_whose_process_died_after_the_charge_is_finished_by_its_retry(
    stores: Stores, stock_item: StockItem, raw_redis: Redis, token: str
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 2)
    cart_before = await stores.carts.get(SESSION)
    payments = DiesAfterTheCharge()
    with pytest.raises(RuntimeError):
        await checkout(stores, token=token, key="k", processor=payments)

    response = await checkout(stores, token=token, key="k", processor=payments)

    [order_id] = set(payments.references)
    assert len(payments.references) == 2
    if token == "tok_visa":
        assert response.status_code == 200
        assert orjson.loads(response.body)["order"]["id"] == order_id
        assert payments.charges == 1
        assert await stock_of(raw_redis, "mug") == 3
        assert await raw_redis.xlen(Keys().orders_stream) == 1
    else:
        assert response.status_code == 402
        assert payments.charges == 0
        assert await stock_of(raw_redis, "mug") == 5
        assert await stores.carts.get(SESSION) == cart_before
        assert await raw_redis.exists(Keys().order(order_id)) == 0  # deleted: nothing charged
    assert await raw_redis.zcard(Keys().pending_checkouts) == 0
    assert await checkout(stores, token=token, key="k", processor=payments) == response


def expired_count() -> float:
    return REGISTRY.get_sample_value("cartlib_checkouts_expired_total") or 0.0


async def test_a_retry_after_the_reaper_cancelled_the_checkout_is_told_so_and_charges_nothing(
    stores: Stores,
    stock_item: StockItem,
    raw_redis: Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 2)
    payments = DiesAfterTheCharge()
    with pytest.raises(RuntimeError):
        await checkout(stores, key="k", processor=payments)
    [order_id] = payments.references
    expired_before = expired_count()

    with caplog.at_level(logging.WARNING, logger="storefront.orders"):
        assert await stores.orders.release_expired(now_ms=10**15) == 1

    # It cannot know the payment went through (it did): stock back, and a warning naming
    # the order, whose id is the payment reference.
    assert await stock_of(raw_redis, "mug") == 5
    assert orjson.loads(await stores.carts.get(SESSION)) == [{"id": "mug", "quantity": 2}]
    [warning] = [r for r in caplog.records if r.name == "storefront.orders"]
    assert warning.levelno == logging.WARNING
    assert warning.__dict__["payment_reference"] == order_id
    assert expired_count() == expired_before + 1

    response = await checkout(stores, key="k", processor=payments)

    assert response.status_code == 409
    assert orjson.loads(response.body) == {"detail": CheckoutExpired.detail}
    assert payments.references == [order_id]  # not charged again, no new checkout
    assert payments.charges == 1
    assert await raw_redis.xlen(Keys().orders_stream) == 0
    assert await stock_of(raw_redis, "mug") == 5
    assert await checkout(stores, key="k", processor=payments) == response  # remembered
    assert 0 < await raw_redis.ttl(Keys().idempotency(SESSION, "k")) <= 24 * 3600
    # A new key is a new checkout.
    assert (await checkout(stores, key="k2", processor=payments)).status_code == 200


async def test_a_payment_that_outlives_the_reservation_answers_expired(
    stores: Stores, stock_item: StockItem, raw_redis: Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """The reaper cancels the order while its payment is approved: never paid after being
    cancelled; the charge is logged for a refund, and the key answers 409 expired."""

    class SlowPayment(RecordingProcessor):
        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            await stores.orders.release_expired(now_ms=10**15)
            return await super().charge(amount_cents=amount_cents, token=token, reference=reference)

    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    payments = SlowPayment()
    with (
        caplog.at_level(logging.WARNING, logger="storefront.orders"),
        pytest.raises(CheckoutExpired),
    ):
        await checkout(stores, key="k", processor=payments)
    [order_id] = payments.references
    assert await raw_redis.hget(Keys().order(order_id), "status") == b"expired"
    assert await raw_redis.xlen(Keys().orders_stream) == 0
    assert await stock_of(raw_redis, "mug") == 5
    logged = [r.__dict__.get("payment_reference") for r in caplog.records]
    assert logged == [order_id, order_id]  # the reaper's warning, and the approved charge's
    again = await checkout(stores, key="k", processor=payments)
    assert again.status_code == 409
    assert payments.references == [order_id]


async def test_two_attempts_with_one_key_make_one_order_and_one_charge(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    """A retry while the first attempt is still paying (a client that timed out) pays the
    same order with the same reference; both attempts end with that one order."""
    await stock_item("mug", stock=5, price_cents=700)
    await stores.carts.add(SESSION, "mug", 1)
    release = asyncio.Event()
    paying: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]

    class HeldPayments(RecordingProcessor):
        async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
            paying[len(self.references)].set()
            self.references.append(reference)
            await release.wait()
            return await TestProcessor.charge(
                self, amount_cents=amount_cents, token=token, reference=reference
            )

    payments = HeldPayments()
    first = asyncio.create_task(checkout(stores, key="k", processor=payments))
    await paying[0].wait()
    second = asyncio.create_task(checkout(stores, key="k", processor=payments))
    second_paying = asyncio.create_task(paying[1].wait())
    await asyncio.wait([second, second_paying], return_when=asyncio.FIRST_COMPLETED)
    assert paying[1].is_set(), second.result()  # both attempts are paying now
    release.set()
    one, other = await asyncio.gather(first, second)

    assert one.status_code == other.status_code == 200
    assert one.body == other.body
    assert len(payments.references) == 2
    assert len(set(payments.references)) == 1  # the same order, paid twice...
    assert (payments.charges, payments.charged_cents) == (1, 700)  # ...charged once
    assert await stock_of(raw_redis, "mug") == 4
    assert await raw_redis.xlen(Keys().orders_stream) == 1
    assert await raw_redis.zcard(Keys().pending_checkouts) == 0


def cartlib_calls() -> dict[str, float]:
    """Redis calls made through cartlib so far, by command (`script:<name>` for a script)."""
    return {
        sample.labels["command"]: sample.value
        for metric in REGISTRY.collect()
        if metric.name == "cartlib_redis_command_duration_seconds"
        for sample in metric.samples
        if sample.name.endswith("_count")
    }


async def test_a_checkout_still_costs_two_script_calls(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    before = cartlib_calls()
    assert (await checkout(stores, key="k")).status_code == 200
    after = cartlib_calls()
    made = {name: count - before.get(name, 0) for name, count in after.items()}
    assert {name: count for name, count in made.items() if count} == {
        "script:begin_checkout": 1,
        "script:complete_checkout": 1,
    }


async def test_a_record_naming_an_order_that_is_gone_is_not_a_new_checkout(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    """Not expected (the steps that end an order replace its record in the same script), but
    a record still naming an order that is no longer pending never starts a checkout."""
    await stock_item("mug", stock=5)
    await stores.carts.add(SESSION, "mug", 1)
    record = f"{fingerprint('tok_visa')}|pending:{'0' * 32}"
    await raw_redis.set(Keys().idempotency(SESSION, "k"), record)
    payments = RecordingProcessor()
    with pytest.raises(CheckoutExpired):
        await checkout(stores, key="k", processor=payments)
    assert payments.references == []
    assert await stock_of(raw_redis, "mug") == 5
