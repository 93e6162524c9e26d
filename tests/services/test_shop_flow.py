"""The whole shop flow across the two services, over real HTTP."""

from __future__ import annotations

import pytest

from tests.services.conftest import Shop


async def test_add_in_inventory_see_in_checkout_check_out_and_see_the_order(shop: Shop) -> None:
    await shop.put_item("mug", stock=5, price_cents=1299)
    await shop.put_item("cap", stock=5, price_cents=500)
    auth = await shop.new_session()

    added = await shop.add(auth, "mug", 2)
    assert added.status_code == 201
    change = added.json()
    assert change["line"] == {"id": "mug", "quantity": 2}
    assert change["line_count"] == 1
    assert (await shop.add(auth, "cap")).json()["line_count"] == 2

    seen_by_checkout = await shop.cart(auth)
    assert seen_by_checkout.status_code == 200
    assert seen_by_checkout.json() == {
        "session_id": change["session_id"],
        "items": [{"id": "cap", "quantity": 1}, {"id": "mug", "quantity": 2}],
    }
    assert (await shop.cart(auth, shop.inventory)).json() == seen_by_checkout.json()

    paid = await shop.pay(auth)
    assert paid.status_code == 200, paid.text
    body = paid.json()
    assert body["message"] == "Thanks for shopping with us!"
    order = body["order"]
    assert order["status"] == "paid"
    assert order["total_cents"] == 2 * 1299 + 500

    assert (await shop.cart(auth)).json()["items"] == []
    fetched = await shop.client.get(f"{shop.checkout}/orders/{order['id']}", headers=auth)
    assert fetched.json() == order
    stock = (await shop.client.get(f"{shop.inventory}/items/mug")).json()["stock"]
    assert stock == 3


async def test_cart_line_changes(shop: Shop) -> None:
    await shop.put_item("mug")
    await shop.put_item("cap")
    auth = await shop.new_session()
    await shop.add(auth, "mug")
    await shop.add(auth, "cap")
    changed = await shop.client.put(
        f"{shop.inventory}/cart/items/mug", json={"quantity": 7}, headers=auth
    )
    assert changed.status_code == 200
    assert changed.json()["line"] == {"id": "mug", "quantity": 7}
    assert changed.json()["line_count"] == 2
    removed = await shop.client.delete(f"{shop.inventory}/cart/items/cap", headers=auth)
    assert removed.json()["line"] == {"id": "cap", "quantity": 0}
    assert (await shop.cart(auth)).json()["items"] == [{"id": "mug", "quantity": 7}]
    again = await shop.client.delete(f"{shop.inventory}/cart/items/cap", headers=auth)
    assert again.status_code == 200
    assert again.json()["line_count"] == 1
    zero = await shop.client.put(
        f"{shop.inventory}/cart/items/mug", json={"quantity": 0}, headers=auth
    )
    assert zero.json() == {
        "session_id": changed.json()["session_id"],
        "line": {"id": "mug", "quantity": 0},
        "line_count": 0,
    }
    assert (await shop.cart(auth)).json()["items"] == []


async def test_the_articles_routes_still_work(shop: Shop) -> None:
    await shop.put_item("mug", stock=5)
    auth = await shop.new_session()
    added = await shop.client.post(
        f"{shop.inventory}/Cart/Item", json={"item": {"id": "mug"}}, headers=auth
    )
    assert added.status_code == 201
    assert added.json() == {"message": "OK", "cart": [{"id": "mug", "quantity": 1}]}
    paid = await shop.client.patch(
        f"{shop.checkout}/Cart/checkout", json={"payment": {"token": "tok_visa"}}, headers=auth
    )
    assert paid.status_code == 200
    assert paid.json()["message"] == "Thanks for shopping with us!"


async def test_declined_payment_then_success(shop: Shop) -> None:
    await shop.put_item("mug", stock=5)
    auth = await shop.new_session()
    await shop.add(auth, "mug", 2)
    declined = await shop.pay(auth, token="tok_declined")
    assert declined.status_code == 402
    assert (await shop.cart(auth)).json()["items"] == [{"id": "mug", "quantity": 2}]
    assert (await shop.client.get(f"{shop.inventory}/items/mug")).json()["stock"] == 5
    assert (await shop.pay(auth)).status_code == 200


async def test_an_idempotency_key_replays_over_http(shop: Shop) -> None:
    await shop.put_item("mug", stock=5)
    auth = await shop.new_session()
    await shop.add(auth, "mug")
    first = await shop.pay(auth, key="order-attempt-1")
    second = await shop.pay(auth, key="order-attempt-1")
    assert first.status_code == second.status_code == 200
    assert first.json() == second.json()
    other = await shop.new_session()
    await shop.add(other, "mug")
    assert (await shop.pay(other, key="order-attempt-1")).json() != first.json()


async def test_an_idempotency_key_reused_with_another_payment_is_422(shop: Shop) -> None:
    await shop.put_item("mug", stock=5)
    auth = await shop.new_session()
    await shop.add(auth, "mug")
    first = await shop.pay(auth, token="tok_declined", key="attempt-1")
    assert first.status_code == 402
    reused = await shop.pay(auth, token="tok_visa", key="attempt-1")
    assert reused.status_code == 422
    assert reused.headers["content-type"] == "application/json"
    assert "different request" in reused.json()["detail"]
    again = await shop.pay(auth, token="tok_declined", key="attempt-1")
    assert (again.status_code, again.json()) == (402, first.json())


async def test_a_session_declined_too_often_gets_429_with_retry_after(shop: Shop) -> None:
    await shop.put_item("mug", stock=5)
    auth = await shop.new_session()
    await shop.add(auth, "mug")
    for _ in range(5):  # CHECKOUT_MAX_DECLINES
        assert (await shop.pay(auth, token="tok_declined")).status_code == 402
    refused = await shop.pay(auth)
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["retry-after"]) <= 600
    assert "declined" in refused.json()["detail"]
    assert (await shop.cart(auth)).json()["items"] == [{"id": "mug", "quantity": 1}]


@pytest.mark.parametrize("service", ["inventory", "checkout"])
async def test_operations_endpoints(shop: Shop, service: str) -> None:
    base = getattr(shop, service)
    assert (await shop.client.get(f"{base}/healthz")).json() == {"status": "ok"}
    assert (await shop.client.get(f"{base}/readyz")).json() == {"status": "ok"}
    await shop.client.get(f"{base}/healthz")
    metrics = (await shop.client.get(f"{base}/metrics")).text
    assert 'http_requests_total{handler="/healthz",method="GET",status="200"}' in metrics
    assert "cartlib_redis_command_duration_seconds_bucket" in metrics
    assert (await shop.client.get(f"{base}/docs")).status_code == 200
    schema = (await shop.client.get(f"{base}/openapi.json")).json()
    assert "/cart" in schema["paths"]


async def test_metrics_label_routes_by_template_not_raw_path(shop: Shop) -> None:
    await shop.put_item("mug")
    for item_id in ("mug", "nope-1", "nope-2"):
        await shop.client.get(f"{shop.inventory}/items/{item_id}")
    await shop.client.get(f"{shop.inventory}/no/such/route")
    metrics = (await shop.client.get(f"{shop.inventory}/metrics")).text
    assert 'handler="/items/{item_id}"' in metrics
    assert "nope-1" not in metrics
    assert 'handler="none",method="GET",status="404"' in metrics


async def test_request_ids_are_echoed_or_made(shop: Shop) -> None:
    given = await shop.client.get(f"{shop.inventory}/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = await shop.client.get(f"{shop.inventory}/healthz")
    assert len(made.headers["x-request-id"]) == 32
    hostile = await shop.client.get(
        f"{shop.inventory}/healthz", headers={"X-Request-ID": "bad id\twith spaces"}
    )
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"
