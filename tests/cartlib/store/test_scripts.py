from __future__ import annotations

import hashlib

import pytest
from redis.asyncio import Redis

from cartlib.store.scripts import source
from cartlib.store.stores import Stores
from tests.cartlib.conftest import StockItem

SESSION = "session-0001"


async def test_scripts_run_by_sha_and_reload_after_script_flush(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    await stock_item("mug")
    await stores.carts.add(SESSION, "mug")
    # The add script as standalone builds it: the stock preludes, then add_item.lua.
    text = source("add_item", ("stock_prelude", "cart_stock_prelude"))
    sha = hashlib.sha1(text.encode()).hexdigest()
    assert (await raw_redis.script_exists(sha)) == [True]

    await raw_redis.script_flush()  # what a restarted or failed-over Redis looks like
    assert (await raw_redis.script_exists(sha)) == [False]

    assert (await stores.carts.add(SESSION, "mug")).quantity == 2
    assert (await raw_redis.script_exists(sha)) == [True]


@pytest.mark.parametrize(
    ("name", "prelude"),
    [("list_items", "catalog_items"), ("put_item", None)],
)
def test_a_prelude_is_prepended(name: str, prelude: str | None) -> None:
    text = source(name, prelude)
    if prelude is None:
        assert "local function" not in text.split("\n")[0]
    else:
        assert text.startswith(source(prelude))
        assert text.endswith(source(name))


def test_several_preludes_are_prepended_in_order() -> None:
    text = source("get_item", ("stock_prelude", "catalog_items"))
    assert text == source("stock_prelude") + source("catalog_items") + source("get_item")
