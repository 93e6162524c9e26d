"""One cart against its limits over real HTTP: thousands of distinct items sent at once stop
at CART_MAX_LINES, with nothing stored beyond it (the Redis hash is checked directly)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import cast

import orjson
import redis.asyncio as aioredis

from cartlib.store.keys import Keys
from tests.services.conftest import Shop

MAX_LINES = 200  # the services' default CART_MAX_LINES
ATTEMPTS = 1000
ALREADY_IN_THE_CART = MAX_LINES - 10
KEYS = Keys()


async def stock_items(redis_url: str, item_ids: list[str]) -> None:
    """Put items straight into the catalog and stock hashes (the key layout is docs/design.md's):
    a thousand admin calls would only slow the test down."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        info = orjson.dumps({"name": "Thing", "price_cents": 1})
        await client.hset(KEYS.catalog, mapping=dict.fromkeys(item_ids, info))
        await client.hset(KEYS.stock, mapping=dict.fromkeys(item_ids, 10))
    finally:
        await client.aclose()


async def fill_cart(redis_url: str, session_id: str, item_ids: list[str]) -> None:
    """Put one unit of each item into the cart hash, as adds through the API would have."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.hset(KEYS.cart(session_id), mapping=dict.fromkeys(item_ids, 1))
    finally:
        await client.aclose()


async def cart_hash(redis_url: str, session_id: str) -> dict[bytes, bytes]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        # redis-py types replies as bytes or str; without decode_responses they are bytes.
        return cast(dict[bytes, bytes], await client.hgetall(KEYS.cart(session_id)))
    finally:
        await client.aclose()


async def test_thousands_of_distinct_items_at_once_stop_at_the_line_limit(shop: Shop) -> None:
    item_ids = [f"item-{index:05d}" for index in range(ALREADY_IN_THE_CART + ATTEMPTS)]
    await stock_items(shop.stack.redis_url, item_ids)
    auth = await shop.new_session()
    session_id = (await shop.cart(auth)).json()["session_id"]
    await fill_cart(shop.stack.redis_url, session_id, item_ids[:ALREADY_IN_THE_CART])

    # The last lines are raced for by every request at once: each add checks the number of
    # lines and adds one in a single script, so the cart cannot overshoot.
    responses = await asyncio.gather(
        *(shop.add(auth, item_id) for item_id in item_ids[ALREADY_IN_THE_CART:])
    )
    statuses = Counter(response.status_code for response in responses)
    assert statuses == {201: MAX_LINES - ALREADY_IN_THE_CART, 422: ATTEMPTS - statuses[201]}
    refusals = {response.text for response in responses if response.status_code == 422}
    assert refusals == {'{"detail":"A cart holds at most 200 different items"}'}

    cart = (await shop.cart(auth)).json()
    stored = await cart_hash(shop.stack.redis_url, session_id)
    assert len(stored) == MAX_LINES
    assert all(quantity == b"1" for quantity in stored.values())
    assert sorted(line["id"] for line in cart["items"]) == sorted(key.decode() for key in stored)

    # Full, the cart still takes more units of its lines and refuses only new ones.
    held = cart["items"][0]["id"]
    assert (await shop.add(auth, held)).status_code == 201
    assert (await shop.add(auth, item_ids[-1])).status_code == 422
    assert len(await cart_hash(shop.stack.redis_url, session_id)) == MAX_LINES
