"""Shop traffic for the live Prometheus test: steady shoppers, and every kind of failure the
dashboard and alerts are about (declined payments, missing stock, an empty cart, replays,
bad tokens, unknown paths and items, and Redis not answering)."""

from __future__ import annotations

import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx

from tests._redis import RestartableRedis
from tests.services._stack import Stack

# id -> price in cents; stocked by `drive()` so that the steady shoppers never run out.
CATALOG = {
    "badger-plush": 1999,
    "badger-mug": 1299,
    "badger-hoodie": 4999,
    "badger-socks": 899,
    "badger-lamp": 3499,
}


@dataclass
class Shop:
    client: httpx.Client
    inventory: str
    checkout: str
    admin_token: str

    @classmethod
    def of(cls, stack: Stack, client: httpx.Client) -> Shop:
        return cls(client, stack.inventory.url, stack.checkout.url, stack.admin_token)

    def session(self) -> dict[str, str]:
        response = self.client.post(f"{self.inventory}/sessions")
        response.raise_for_status()
        return {"Authorization": f"Bearer {response.json()['token']}"}

    def add(self, auth: dict[str, str], item_id: str, quantity: int = 1) -> httpx.Response:
        body = {"item": {"id": item_id}, "quantity": quantity}
        return self.client.post(f"{self.inventory}/cart/items", json=body, headers=auth)

    def pay(
        self, auth: dict[str, str], token: str = "tok_visa", key: str | None = None
    ) -> httpx.Response:
        headers = {**auth, **({"Idempotency-Key": key} if key else {})}
        body = {"payment": {"token": token}}
        return self.client.post(f"{self.checkout}/checkout", json=body, headers=headers)

    def put_item(self, item_id: str, *, stock: int, price_cents: int) -> None:
        response = self.client.put(
            f"{self.inventory}/items/{item_id}",
            json={"name": item_id.title(), "price_cents": price_cents, "stock": stock},
            headers={"X-Admin-Token": self.admin_token},
        )
        response.raise_for_status()


def shop_once(shop: Shop, rng: random.Random) -> None:
    """One shopper: browse, fill a cart, look at it from checkout, pay (now and then with
    a card that is declined). Failures are tolerated: this also runs while Redis is down."""
    try:
        auth = shop.session()
        shop.client.get(f"{shop.inventory}/items")
        for item_id in rng.sample(sorted(CATALOG), rng.randint(1, 3)):
            shop.client.get(f"{shop.inventory}/items/{item_id}")
            shop.add(auth, item_id, rng.randint(1, 2))
        shop.client.get(f"{shop.checkout}/cart", headers=auth)
        shop.pay(auth, "tok_declined" if rng.random() < 0.15 else "tok_visa")
    except httpx.HTTPError:
        pass


def expect(response: httpx.Response, status: int) -> None:
    assert response.status_code == status, (response.request.url, response.text)


def failures(shop: Shop) -> None:
    """Each failure once, checked, so the metrics it should produce are known to exist."""
    declined = shop.session()
    expect(shop.add(declined, "badger-mug"), 201)
    expect(shop.pay(declined, "tok_declined"), 402)

    shop.put_item("limited-edition", stock=1, price_cents=9999)
    first, second = shop.session(), shop.session()
    expect(shop.add(first, "limited-edition", 2), 409)  # more than in stock
    expect(shop.add(first, "limited-edition"), 201)
    expect(shop.add(second, "limited-edition"), 201)
    expect(shop.pay(first), 200)
    expect(shop.pay(second), 409)  # insufficient_stock at checkout

    expect(shop.pay(shop.session()), 400)  # empty cart

    replayed = shop.session()
    expect(shop.add(replayed, "badger-socks"), 201)
    expect(shop.pay(replayed, key="order-1"), 200)
    expect(shop.pay(replayed, key="order-1"), 200)  # replayed, not a new checkout

    for service in (shop.inventory, shop.checkout):
        bad_tokens: list[dict[str, str]] = [{"Authorization": "Bearer not-a-token"}, {}]
        for headers in bad_tokens:
            expect(shop.client.get(f"{service}/cart", headers=headers), 401)
        expect(shop.client.get(f"{service}/no-such-page"), 404)
    expect(shop.client.get(f"{shop.inventory}/items/no-such-item"), 404)
    expect(shop.client.get(f"{shop.checkout}/orders/{'0' * 32}", headers=first), 404)


def redis_outage(shop: Shop, redis: RestartableRedis, seconds: float) -> None:
    """Freeze Redis for `seconds`: calls time out (1 s each), the services answer 503, a
    checkout in flight fails (outcome `error`), and both recover when Redis answers again.
    Carts are read again and again meanwhile: rate() misses the first increment of a new
    series, so errors must keep coming over several scrapes to show on the dashboard."""
    in_flight = shop.session()
    expect(shop.add(in_flight, "badger-hoodie"), 201)
    redis.pause()
    thawed_at = time.monotonic() + seconds

    def read_carts_until_thawed(service: str) -> list[int]:
        statuses = []
        while time.monotonic() + 1.5 < thawed_at:  # each call ends before Redis is back
            statuses.append(shop.client.get(f"{service}/cart", headers=in_flight).status_code)
        return statuses

    try:
        with ThreadPoolExecutor(max_workers=5) as pool:
            once = [
                pool.submit(shop.pay, in_flight),
                pool.submit(shop.client.get, f"{shop.inventory}/readyz"),
                pool.submit(shop.client.get, f"{shop.checkout}/readyz"),
            ]
            repeated = [
                pool.submit(read_carts_until_thawed, service)
                for service in (shop.inventory, shop.checkout)
            ]
            statuses = [future.result().status_code for future in once]
            statuses += [status for future in repeated for status in future.result()]
        time.sleep(max(0.0, thawed_at - time.monotonic()))
    finally:
        redis.unpause()
    assert statuses == [503] * len(statuses), statuses
    assert len(statuses) >= len(once) + 2 * 2, "too few calls while Redis was frozen"


def drive(
    shop: Shop, redis: RestartableRedis, *, shoppers: int = 3, phase: float = 4.0
) -> dict[str, float]:
    """Steady shoppers throughout; the failures after `phase` seconds, a 4 s Redis outage
    `phase` / 2 seconds later, and `phase` seconds of recovery at the end. Returns when
    the failures and the outage began and ended (Unix time)."""
    for item_id, price_cents in CATALOG.items():
        shop.put_item(item_id, stock=1_000_000, price_cents=price_cents)
    stop = threading.Event()

    def keep_shopping(seed: int) -> None:
        rng = random.Random(seed)
        while not stop.is_set():
            shop_once(shop, rng)
            time.sleep(0.05)

    with ThreadPoolExecutor(max_workers=shoppers) as pool:
        running = [pool.submit(keep_shopping, seed) for seed in range(shoppers)]
        events = {}
        try:
            time.sleep(phase)
            events["failures"] = time.time()
            failures(shop)
            time.sleep(phase / 2)
            events["redis frozen"] = time.time()
            redis_outage(shop, redis, seconds=4.0)
            events["redis back"] = time.time()
            time.sleep(phase)
        finally:
            stop.set()
        for shopper in running:
            shopper.result()
    return events
