"""WAIT for paid orders (REDIS_WAIT_REPLICAS), against a Redis with no replica: WAIT always
falls short there, which is exactly the case a client must never be told "paid" for.

With replicas and sentinels (WAIT met, a paused replica, a failover): tests/reliability.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cartlib.store.errors import NotReplicated
from cartlib.store.keys import Keys
from cartlib.store.orders import split_record
from cartlib.store.stores import Stores
from checkout.payments import TestProcessor
from tests.cartlib.conftest import StockItem, make_settings

SESSION = "session-durable"
KEY = "key-0001"
processor = TestProcessor()


@pytest.fixture
async def durable_stores(redis_url: str) -> AsyncIterator[Stores]:
    """Stores that want one replica, and wait 50 ms for it."""
    stores = Stores.from_settings(
        make_settings(redis_url, redis_wait_replicas=1, redis_wait_timeout_ms=50)
    )
    yield stores
    await stores.aclose()


def shortfalls(step: str) -> float:
    return REGISTRY.get_sample_value("cartlib_wait_shortfalls_total", {"step": step}) or 0.0


async def wait_calls(raw_redis: Redis) -> int:
    stats = await raw_redis.info("commandstats")
    return int(stats.get("cmdstat_wait", {}).get("calls", 0))


async def pay(stores: Stores) -> None:
    await stores.orders.checkout(
        SESSION, payment_token="tok_visa", processor=processor, idempotency_key=KEY
    )


async def test_too_few_replicas_is_503_and_so_is_the_retry(
    durable_stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5, price_cents=1299)
    await durable_stores.carts.add(SESSION, "mug", 2)
    before = {step: shortfalls(step) for step in ("checkout", "replay")}

    with pytest.raises(NotReplicated):
        await pay(durable_stores)
    # The order is paid on this server and its response remembered for the key...
    remembered = await raw_redis.get(Keys().idempotency(SESSION, KEY))
    assert remembered is not None
    record = orjson.loads(split_record(remembered)[1])  # type: ignore[arg-type]
    assert record["status_code"] == 200
    order_id = record["body"]["order"]["id"]
    assert await raw_redis.hget(Keys().order(order_id), "status") == b"paid"
    ttl = await raw_redis.ttl(Keys().idempotency(SESSION, KEY))
    # ...but a retry with the key re-checks the replicas rather than replaying the 200.
    with pytest.raises(NotReplicated):
        await pay(durable_stores)
    assert await raw_redis.get(Keys().idempotency(SESSION, KEY)) == remembered
    assert 0 < await raw_redis.ttl(Keys().idempotency(SESSION, KEY)) <= ttl  # KEEPTTL

    assert shortfalls("checkout") == before["checkout"] + 1
    assert shortfalls("replay") == before["replay"] + 1


async def test_a_flushed_script_cache_is_reloaded_for_the_pipeline(
    durable_stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await durable_stores.carts.add(SESSION, "mug", 1)
    await raw_redis.script_flush()  # as after a restart or a failover to a fresh replica
    with pytest.raises(NotReplicated):  # not a NOSCRIPT StoreError
        await pay(durable_stores)


async def test_wait_is_sent_only_when_replicas_are_wanted(
    stores: Stores, durable_stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug", stock=5)
    await raw_redis.config_resetstat()
    await stores.carts.add("no-wait-session", "mug", 1)
    response = await stores.orders.checkout(
        "no-wait-session", payment_token="tok_visa", processor=processor
    )
    assert response.status_code == 200
    assert await wait_calls(raw_redis) == 0

    await durable_stores.carts.add(SESSION, "mug", 1)
    with pytest.raises(NotReplicated):
        await pay(durable_stores)
    assert await wait_calls(raw_redis) == 1
