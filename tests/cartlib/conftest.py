"""Fixtures for cartlib against a real Redis (both versions, through `redis_url`)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from redis.asyncio import Redis

from cartlib.settings import Settings
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn

SECRET = "test-secret-" + "x" * 32


def make_settings(redis_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "redis_url": redis_url,
        "cart_token_secret": SECRET,
        "cart_max_lines": 5,
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
async def stores(redis_url: str) -> AsyncIterator[Stores]:
    stores = Stores.from_settings(make_settings(redis_url))
    yield stores
    await stores.aclose()


@pytest.fixture
async def raw_redis(redis_url: str) -> AsyncIterator[Redis]:
    """A plain client to look at what cartlib stored."""
    client = Redis.from_url(redis_url)
    yield client
    await client.aclose()


StockItem = Callable[..., Awaitable[str]]


@pytest.fixture
def stock_item(stores: Stores) -> StockItem:
    """Put an item in the catalog: `await stock_item("mug", stock=3, price_cents=500)`."""

    async def put(item_id: str, *, stock: int = 100, price_cents: int = 1000) -> str:
        await stores.catalog.put(
            item_id, ItemIn(name=item_id.title(), price_cents=price_cents, stock=stock)
        )
        return item_id

    return put
