"""Hostile credentials over real HTTP that test_bad_input.py's table of bad tokens does not
cover: headers far larger than any token, and one session reusing another's
Idempotency-Key."""

from __future__ import annotations

import pytest

from tests.services.conftest import Shop
from tests.services.test_bad_input import assert_refused, redis_unchanged

HUGE_HEADER_BYTES = 64 * 1024


@pytest.mark.parametrize("service", ["inventory", "checkout"])
@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer " + "a" * HUGE_HEADER_BYTES},
        {"Authorization": "Bearer " + "eyJ" * (HUGE_HEADER_BYTES // 3) + ".e30.sig"},
        {"Authorization": "Basic " + "a" * HUGE_HEADER_BYTES},
        {f"X-Filler-{index}": "a" * 1024 for index in range(64)},
    ],
    ids=["64 KiB bearer token", "64 KiB JWT-shaped token", "64 KiB basic", "64 headers of 1 KiB"],
)
async def test_huge_headers_are_a_431_not_a_dropped_connection(
    shop: Shop, service: str, headers: dict[str, str]
) -> None:
    """Headers over HTTP_MAX_HEADER_BYTES (16 KiB) never reach the application: the server
    answers 431 and closes the connection (tests/services/test_http_limits.py)."""
    await shop.put_item("mug")
    owner = await shop.new_session()
    assert (await shop.add(owner, "mug")).status_code == 201
    with redis_unchanged(shop):
        response = await shop.client.get(f"{getattr(shop, service)}/cart", headers=headers)
        detail = assert_refused(response, 431)
        assert detail == "Request line and headers larger than 16384 bytes"
        assert response.headers["connection"] == "close"
    # The connection pool and the service are fine afterwards.
    assert (await shop.cart(owner, getattr(shop, service))).status_code == 200


async def test_another_sessions_idempotency_key_never_replays_its_order(shop: Shop) -> None:
    await shop.put_item("mug", stock=5)
    owner = await shop.new_session()
    assert (await shop.add(owner, "mug", 2)).status_code == 201
    paid = await shop.pay(owner, key="order-of-the-owner")
    assert paid.status_code == 200, paid.text
    intruder = await shop.new_session()

    with redis_unchanged(shop):
        # The same key in another session is another checkout: of the intruder's empty cart.
        response = await shop.pay(intruder, key="order-of-the-owner")
        assert assert_refused(response, 400) == "There are no items in your cart!"
        assert paid.json()["order"]["id"] not in response.text
    # The owner's key still replays the owner's own order.
    replay = await shop.pay(owner, key="order-of-the-owner")
    assert replay.json() == paid.json()
