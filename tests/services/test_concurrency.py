"""Concurrent requests over real HTTP: nothing lost, nothing oversold, no double order.

The article's design (GET the JSON cart, append, SET it back) loses about a fifth of 1,000
concurrent adds; here every add is one atomic script.
"""

from __future__ import annotations

import asyncio

from tests.services.conftest import Shop


async def test_a_thousand_concurrent_adds_to_one_cart_give_a_thousand(shop: Shop) -> None:
    items = [f"item-{index}" for index in range(20)]
    for item_id in items:
        await shop.put_item(item_id, stock=1000)
    auth = await shop.new_session()

    responses = await asyncio.gather(
        *(shop.add(auth, items[index % len(items)]) for index in range(1000))
    )

    assert [r.status_code for r in responses] == [201] * 1000
    lines = (await shop.cart(auth)).json()["items"]
    assert sum(line["quantity"] for line in lines) == 1000
    assert {line["id"]: line["quantity"] for line in lines} == {item: 50 for item in items}


async def test_fifty_checkouts_competing_for_ten_units_sell_exactly_ten(shop: Shop) -> None:
    await shop.put_item("last-mugs", stock=10)
    sessions = [await shop.new_session() for _ in range(50)]
    for auth in sessions:
        assert (await shop.add(auth, "last-mugs")).status_code == 201

    responses = await asyncio.gather(*(shop.pay(auth) for auth in sessions))

    statuses = [response.status_code for response in responses]
    assert statuses.count(200) == 10
    assert statuses.count(409) == 40
    item = (await shop.client.get(f"{shop.inventory}/items/last-mugs")).json()
    assert item["stock"] == 0


async def test_twenty_concurrent_checkouts_of_one_cart_make_one_order(shop: Shop) -> None:
    await shop.put_item("mug", stock=100)
    auth = await shop.new_session()
    await shop.add(auth, "mug", 3)

    responses = await asyncio.gather(*(shop.pay(auth) for _ in range(20)))

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] + [400] * 19
    assert (await shop.client.get(f"{shop.inventory}/items/mug")).json()["stock"] == 97


async def test_twenty_concurrent_retries_with_one_key_make_one_order(shop: Shop) -> None:
    await shop.put_item("mug", stock=100)
    auth = await shop.new_session()
    await shop.add(auth, "mug", 3)

    responses = await asyncio.gather(*(shop.pay(auth, key="same-attempt") for _ in range(20)))

    paid = [response for response in responses if response.status_code == 200]
    # Retries that arrive while the first is running are told so (409); later ones replay it.
    assert all(response.status_code in (200, 409) for response in responses)
    assert len({response.json()["order"]["id"] for response in paid}) == 1
    assert (await shop.client.get(f"{shop.inventory}/items/mug")).json()["stock"] == 97
