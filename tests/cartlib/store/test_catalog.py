from __future__ import annotations

import orjson
import pytest
from redis.asyncio import Redis

from cartlib.store.errors import ItemNotFound
from cartlib.store.keys import Keys
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn


def item(name: str = "Mug", price_cents: int = 1299, stock: int = 10) -> ItemIn:
    return ItemIn(name=name, price_cents=price_cents, stock=stock)


async def test_put_then_get_and_list(stores: Stores) -> None:
    returned = await stores.catalog.put("mug", item('Mug "large"'))
    expected = {"id": "mug", "name": 'Mug "large"', "price_cents": 1299, "stock": 10}
    assert orjson.loads(returned) == expected
    assert orjson.loads(await stores.catalog.get_json("mug")) == expected
    await stores.catalog.put("cap", item("Cap", 500, 3))
    listing = orjson.loads(await stores.catalog.list_json())
    assert [entry["id"] for entry in listing["items"]] == ["cap", "mug"]


async def test_an_unknown_item_is_not_found(stores: Stores) -> None:
    with pytest.raises(ItemNotFound):
        await stores.catalog.get_json("nope")


async def test_the_empty_catalog_lists_no_items(stores: Stores) -> None:
    assert orjson.loads(await stores.catalog.list_json()) == {"items": []}


async def test_the_listing_is_cached_but_a_single_item_is_exact(
    stores: Stores, raw_redis: Redis
) -> None:
    await stores.catalog.put("mug", item(stock=10))
    await stores.catalog.list_json()
    await raw_redis.hset(Keys().stock, "mug", 7)  # a checkout elsewhere
    cached = orjson.loads(await stores.catalog.list_json())
    assert cached["items"][0]["stock"] == 10
    assert orjson.loads(await stores.catalog.get_json("mug"))["stock"] == 7


async def test_an_admin_change_invalidates_the_listing(stores: Stores) -> None:
    await stores.catalog.put("mug", item(price_cents=1000))
    await stores.catalog.list_json()
    await stores.catalog.put("mug", item(price_cents=2000))
    listing = orjson.loads(await stores.catalog.list_json())
    assert listing["items"][0]["price_cents"] == 2000


async def test_seeding_never_overwrites_existing_items(stores: Stores) -> None:
    await stores.catalog.put("mug", item(stock=3))
    assert not await stores.catalog.is_empty()
    added = await stores.catalog.seed([("mug", item(stock=100)), ("cap", item("Cap"))])
    assert added == 1
    assert orjson.loads(await stores.catalog.get_json("mug"))["stock"] == 3
    assert orjson.loads(await stores.catalog.get_json("cap"))["name"] == "Cap"
