from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import orjson
import pytest
from redis.asyncio import Redis

from cartlib.store.carts import LineChange
from cartlib.store.errors import (
    InsufficientStock,
    ItemNotFound,
    QuantityLimitExceeded,
    TooManyLines,
)
from cartlib.store.keys import Keys
from cartlib.store.stores import Stores
from tests.cartlib.conftest import StockItem

SESSION = "session-0001"


def lines(encoded: bytes) -> dict[str, int]:
    return {line["id"]: line["quantity"] for line in orjson.loads(encoded)}


async def test_an_unknown_cart_is_empty(stores: Stores) -> None:
    assert orjson.loads(await stores.carts.get(SESSION)) == []


async def test_adds_accumulate_and_every_add_returns_the_changed_line(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug")
    await stock_item("cap")
    assert await stores.carts.add(SESSION, "mug", 2) == LineChange("mug", 2, 1)
    assert await stores.carts.add(SESSION, "cap") == LineChange("cap", 1, 2)
    assert await stores.carts.add(SESSION, "mug", 3) == LineChange("mug", 5, 2)
    cart = await stores.carts.get(SESSION)
    assert lines(cart) == {"mug": 5, "cap": 1}
    assert [line["id"] for line in orjson.loads(cart)] == ["cap", "mug"]  # sorted by id


async def test_the_cart_is_a_hash_under_the_session_key_with_the_ttl(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug")
    await stores.carts.add(SESSION, "mug", 2)
    key = Keys().cart(SESSION)
    assert await raw_redis.type(key) == b"hash"
    assert await raw_redis.hgetall(key) == {b"mug": b"2"}
    ttl_ms = stores.settings.cart_ttl_seconds * 1000
    assert ttl_ms - 60_000 < await raw_redis.pttl(key) <= ttl_ms


async def test_every_write_renews_the_ttl(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug")
    await stock_item("cap")
    key = Keys().cart(SESSION)
    ttl_ms = stores.settings.cart_ttl_seconds * 1000
    writes: list[Callable[[], Awaitable[LineChange]]] = [
        lambda: stores.carts.add(SESSION, "mug"),
        lambda: stores.carts.set(SESSION, "mug", 4),
        lambda: stores.carts.add(SESSION, "cap"),
        lambda: stores.carts.remove(SESSION, "cap"),
    ]
    for write in writes:
        if await raw_redis.exists(key):
            await raw_redis.pexpire(key, 5_000)
        await write()
        assert await raw_redis.pttl(key) > ttl_ms - 60_000


async def test_an_expired_cart_is_empty(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug")
    await stores.carts.add(SESSION, "mug")
    await raw_redis.pexpire(Keys().cart(SESSION), 1)
    await asyncio.sleep(0.05)
    assert orjson.loads(await stores.carts.get(SESSION)) == []


async def test_unknown_item_is_refused_and_nothing_is_stored(
    stores: Stores, raw_redis: Redis
) -> None:
    with pytest.raises(ItemNotFound):
        await stores.carts.add(SESSION, "no-such-item")
    with pytest.raises(ItemNotFound):
        await stores.carts.set(SESSION, "no-such-item", 1)
    assert await raw_redis.exists(Keys().cart(SESSION)) == 0


@pytest.mark.parametrize("quantity", [0, -1, 100, 10**9])
async def test_quantities_outside_the_limit_are_refused(
    stores: Stores, stock_item: StockItem, quantity: int
) -> None:
    await stock_item("mug")
    with pytest.raises(QuantityLimitExceeded):
        await stores.carts.add(SESSION, "mug", quantity)
    assert orjson.loads(await stores.carts.get(SESSION)) == []


async def test_a_line_never_exceeds_the_cap(stores: Stores, stock_item: StockItem) -> None:
    await stock_item("mug", stock=1000)
    await stores.carts.add(SESSION, "mug", 98)
    with pytest.raises(QuantityLimitExceeded, match="98 of 'mug' already"):
        await stores.carts.add(SESSION, "mug", 2)
    assert await stores.carts.add(SESSION, "mug", 1) == LineChange("mug", 99, 1)


async def test_more_than_the_stock_is_refused(stores: Stores, stock_item: StockItem) -> None:
    await stock_item("mug", stock=3)
    await stores.carts.add(SESSION, "mug", 2)
    with pytest.raises(InsufficientStock, match="Only 3"):
        await stores.carts.add(SESSION, "mug", 2)
    with pytest.raises(InsufficientStock):
        await stores.carts.set(SESSION, "mug", 4)
    assert lines(await stores.carts.get(SESSION)) == {"mug": 2}


async def test_the_number_of_lines_is_capped(stores: Stores, stock_item: StockItem) -> None:
    max_lines = stores.settings.cart_max_lines
    for index in range(max_lines):
        await stores.carts.add(SESSION, await stock_item(f"item-{index}"))
    extra = await stock_item("one-too-many")
    with pytest.raises(TooManyLines):
        await stores.carts.add(SESSION, extra)
    with pytest.raises(TooManyLines):
        await stores.carts.set(SESSION, extra, 1)
    # Existing lines can still change.
    assert await stores.carts.add(SESSION, "item-0") == LineChange("item-0", 2, max_lines)
    assert len(lines(await stores.carts.get(SESSION))) == max_lines


async def test_set_zero_and_remove_delete_the_line_idempotently(
    stores: Stores, stock_item: StockItem
) -> None:
    await stock_item("mug")
    await stock_item("cap")
    await stores.carts.add(SESSION, "mug", 2)
    await stores.carts.add(SESSION, "cap", 1)
    assert await stores.carts.set(SESSION, "cap", 4) == LineChange("cap", 4, 2)
    assert await stores.carts.set(SESSION, "mug", 0) == LineChange("mug", 0, 1)
    assert lines(await stores.carts.get(SESSION)) == {"cap": 4}
    assert await stores.carts.remove(SESSION, "cap") == LineChange("cap", 0, 0)
    assert await stores.carts.remove(SESSION, "cap") == LineChange("cap", 0, 0)
    assert await stores.carts.remove(SESSION, "never-existed") == LineChange("never-existed", 0, 0)
    assert lines(await stores.carts.get(SESSION)) == {}


async def test_a_line_of_a_withdrawn_item_can_still_be_removed(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug")
    await stores.carts.add(SESSION, "mug")
    await raw_redis.hdel(Keys().stock, "mug")
    await raw_redis.hdel(Keys().catalog, "mug")
    assert await stores.carts.remove(SESSION, "mug") == LineChange("mug", 0, 0)
    assert lines(await stores.carts.get(SESSION)) == {}


async def test_sessions_have_separate_carts(stores: Stores, stock_item: StockItem) -> None:
    await stock_item("mug")
    await stores.carts.add("session-aaaa", "mug", 1)
    await stores.carts.add("session-bbbb", "mug", 2)
    assert lines(await stores.carts.get("session-aaaa")) == {"mug": 1}
    assert lines(await stores.carts.get("session-bbbb")) == {"mug": 2}


async def test_concurrent_adds_to_one_cart_are_never_lost(
    stores: Stores, stock_item: StockItem
) -> None:
    items = [await stock_item(f"item-{index}", stock=10_000) for index in range(4)]
    adds = [stores.carts.add(SESSION, items[index % 4]) for index in range(200)]
    await asyncio.gather(*adds)
    assert lines(await stores.carts.get(SESSION)) == {item: 50 for item in items}


async def test_item_ids_are_json_escaped(stores: Stores, stock_item: StockItem) -> None:
    # Ids are validated at the HTTP edge; the scripts still encode whatever they hold.
    await stock_item('quote"and\\slash')
    await stores.carts.add(SESSION, 'quote"and\\slash')
    assert lines(await stores.carts.get(SESSION)) == {'quote"and\\slash': 1}
