"""Redis down: both services answer fast 503s (with Retry-After) instead of hanging or failing
with a 500, stay live (`/healthz`) but not ready (`/readyz`), and recover on their own when
Redis comes back, without a restart.

Latency is measured and printed (run with `-rP` to see it), never asserted on beyond "the
client's timeout did not fire": a hang fails the test, a slow machine does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from functools import partial

import httpx
import pytest

from inventory.seed import read_catalog
from tests._redis import RestartableRedis
from tests.services._outage import (
    CLIENT_TIMEOUT,
    Send,
    assert_no_tracebacks,
    assert_unavailable,
    timed,
    wait_until_ready,
)
from tests.services._stack import Stack, running_stack
from tests.services.conftest import Shop

CONCURRENT_REQUESTS = 16


@pytest.fixture
def down_stack(restartable_redis: RestartableRedis) -> Iterator[Stack]:
    """Both services in front of a Redis of this test's own, which the test takes down."""
    with running_stack(restartable_redis.url) as stack:
        yield stack


@pytest.fixture
async def down_shop(down_stack: Stack) -> AsyncIterator[Shop]:
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
        yield Shop(down_stack, client)


def store_requests(shop: Shop, auth: dict[str, str]) -> dict[str, Send]:
    """The requests that need Redis, reads first: a timed-out write may still run later."""
    return {
        "GET /items": lambda: shop.client.get(f"{shop.inventory}/items"),
        "GET /items/mug": lambda: shop.client.get(f"{shop.inventory}/items/mug"),
        "GET /cart (inventory)": lambda: shop.cart(auth, shop.inventory),
        "GET /cart (checkout)": lambda: shop.cart(auth),
        "POST /cart/items": lambda: shop.add(auth, "mug"),
        "POST /checkout": lambda: shop.pay(auth),
    }


async def assert_down(shop: Shop, auth: dict[str, str], outage: str) -> None:
    """Every Redis-backed request answers 503 with Retry-After; the process stays live."""
    latencies: dict[str, float] = {}
    for name, send in store_requests(shop, auth).items():
        response, latencies[name] = await timed(name, send)
        assert_unavailable(name, response)
    for service, base in (("inventory", shop.inventory), ("checkout", shop.checkout)):
        name = f"GET /readyz ({service})"
        response, latencies[name] = await timed(name, partial(shop.client.get, f"{base}/readyz"))
        assert_unavailable(name, response)
        healthz = await shop.client.get(f"{base}/healthz")
        assert healthz.status_code == 200
        assert healthz.json() == {"status": "ok"}
    # Sessions are tokens, not Redis state: they are still issued.
    assert (await shop.client.post(f"{shop.inventory}/sessions")).status_code == 201

    # Many at once: none waits for another's timeout (the pool must not become the hang).
    burst = [
        timed("burst GET /cart", partial(shop.cart, auth, base))
        for base in (shop.inventory, shop.checkout)
        for _ in range(CONCURRENT_REQUESTS // 2)
    ]
    results = await asyncio.gather(*burst)
    for response, _ in results:
        assert_unavailable("burst GET /cart", response)
    latencies[f"{CONCURRENT_REQUESTS} concurrent GET /cart (slowest)"] = max(
        elapsed for _, elapsed in results
    )

    report = "\n".join(f"  {name:<40} {seconds:6.3f} s" for name, seconds in latencies.items())
    print(f"\n503 latency after Redis {outage}:\n{report}")  # noqa: T201


def report_recovery(outage: str, seconds: float) -> None:
    print(f"both services ready {seconds:.3f} s after Redis came back from {outage}")  # noqa: T201


async def assert_recovered(shop: Shop) -> None:
    """The same processes serve carts again. A restarted Redis comes back empty (no
    persistence), so the item is created again first."""
    await shop.put_item("mug", stock=100, price_cents=250)
    auth = await shop.new_session()
    added = await shop.add(auth, "mug", 2)
    assert added.status_code == 201, added.text
    for base in (shop.inventory, shop.checkout):
        cart = await shop.cart(auth, base)
        assert cart.status_code == 200, cart.text
        assert cart.json()["items"] == [{"id": "mug", "quantity": 2}]
    listing = await shop.client.get(f"{shop.inventory}/items")
    assert listing.status_code == 200, listing.text
    assert "mug" in {item["id"] for item in listing.json()["items"]}
    paid = await shop.pay(auth)
    assert paid.status_code == 200, paid.text
    assert paid.json()["order"]["total_cents"] == 500


async def prepared_session(shop: Shop) -> dict[str, str]:
    await shop.put_item("mug", stock=100, price_cents=250)
    auth = await shop.new_session()
    assert (await shop.add(auth, "mug")).status_code == 201
    return auth


@pytest.mark.parametrize("outage", ["stop", "kill"])
async def test_redis_stopped_gives_fast_503s_then_recovery(
    down_shop: Shop, restartable_redis: RestartableRedis, outage: str
) -> None:
    auth = await prepared_session(down_shop)
    if outage == "stop":
        restartable_redis.stop()
    else:
        restartable_redis.kill()
    assert restartable_redis.status() == "exited"

    await assert_down(down_shop, auth, f"{outage} (connection refused)")

    restartable_redis.start()
    report_recovery(outage, await wait_until_ready(down_shop))
    await assert_recovered(down_shop)
    assert_no_tracebacks(down_shop.stack)


async def test_redis_paused_gives_503s_not_hangs_then_recovery(
    down_shop: Shop, restartable_redis: RestartableRedis
) -> None:
    auth = await prepared_session(down_shop)
    restartable_redis.pause()
    try:
        assert restartable_redis.status() == "paused"
        await assert_down(down_shop, auth, "pause (no answer: timeouts)")
    finally:
        restartable_redis.unpause()

    report_recovery("pause", await wait_until_ready(down_shop))
    await assert_recovered(down_shop)
    assert_no_tracebacks(down_shop.stack)


async def test_catalog_is_seeded_once_redis_comes_up_after_the_services(
    restartable_redis: RestartableRedis,
) -> None:
    """On a cluster the services usually start before Redis: the startup seed of the bundled
    catalog runs once Redis answers, in the same processes."""
    bundled = {item.id for item in read_catalog(None).items}
    restartable_redis.stop()
    with running_stack(restartable_redis.url) as stack:
        async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT) as client:
            shop = Shop(stack, client)
            restartable_redis.start()
            await wait_until_ready(shop)
            listed: set[str] = set()
            for _ in range(50):  # at most about 10 s
                listing = await client.get(f"{shop.inventory}/items")
                if listing.status_code == 200:
                    listed = {item["id"] for item in listing.json()["items"]}
                    if bundled <= listed:
                        break
                await asyncio.sleep(0.2)
            assert bundled <= listed, f"the catalog lists {sorted(listed)}"
        assert_no_tracebacks(stack)
