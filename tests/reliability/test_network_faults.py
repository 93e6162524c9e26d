"""Redis frozen (`docker pause`) for longer than every timeout, under concurrent load, three
times in a row: every request answers 503 (bounded by the Redis timeouts, never a hang, never
a 500), the services recover by themselves after `docker unpause`, and no connection leaks.

tests/services/test_redis_down.py already shows one pause, request by request, with an idle
pool. Here the pool is the subject: smaller than the load (`REDIS_MAX_CONNECTIONS` 8 per
service, 32 concurrent clients), so requests also wait for a connection and give up
(`REDIS_POOL_TIMEOUT`). A leak would show as a pool that keeps connections checked out
(`in_use` above 0 once the load is over), a pool above its maximum, or Redis holding more
connections from the services (CLIENT LIST, by client name) than their pools have.

Run with `-rP` for the figures of each cycle.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from tests._redis import RestartableRedis
from tests.reliability._faults import (
    Pool,
    Recorder,
    pool_of,
    redis_and_stack,
    report,
    service_connections,
    shopping,
)
from tests.services._outage import assert_no_tracebacks, wait_until_ready
from tests.services._stack import Stack
from tests.services.conftest import Shop

pytestmark = pytest.mark.docker

MAX_CONNECTIONS = 8  # per service: a quarter of the clients, so some wait for the pool
CLIENTS = 32  # concurrent clients, half of them on each service
PAUSE_SECONDS = 3.0  # past REDIS_SOCKET_TIMEOUT + REDIS_POOL_TIMEOUT (1 s + 1 s)
CYCLES = 3
SETTLE_TIMEOUT = 10.0  # for Redis to notice the connections the services closed


@pytest.fixture
def paused_stack() -> Iterator[tuple[RestartableRedis, Stack]]:
    with redis_and_stack(REDIS_MAX_CONNECTIONS=str(MAX_CONNECTIONS)) as pair:
        yield pair


def base_of(shop: Shop, client: int) -> str:
    return shop.inventory if client % 2 == 0 else shop.checkout


async def one_round(shop: Shop, auth: dict[str, str], client: int, recorder: Recorder) -> None:
    """What one client does: read its cart, and on inventory, add to it too."""
    base = base_of(shop, client)
    await recorder.send("GET /cart", lambda: shop.cart(auth, base))
    if base == shop.inventory:
        await recorder.send("POST /cart/items", lambda: shop.add(auth, "mug"))


async def keep_shopping(
    shop: Shop, auth: dict[str, str], client: int, recorder: Recorder, stop: asyncio.Event
) -> None:
    while not stop.is_set():
        await one_round(shop, auth, client, recorder)


async def pools(shop: Shop) -> tuple[Pool, Pool]:
    return await pool_of(shop.client, shop.inventory), await pool_of(shop.client, shop.checkout)


async def settled(shop: Shop, server: RestartableRedis) -> tuple[tuple[Pool, Pool], int]:
    """The pools and Redis's count of the services' connections, once the load is over and
    Redis has noticed the connections the services closed (or SETTLE_TIMEOUT has passed: the
    caller's assertions then say what is wrong)."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while True:
        both = await pools(shop)
        connections = await asyncio.to_thread(service_connections, server)
        idle = all(pool.in_use == 0 for pool in both)
        if idle and connections <= sum(pool.total for pool in both):
            return both, connections
        if time.monotonic() > deadline:
            return both, connections
        await asyncio.sleep(0.1)


def assert_no_leak(both: tuple[Pool, Pool], connections: int, when: str) -> None:
    for service, pool in zip(("inventory", "checkout"), both, strict=True):
        assert pool.in_use == 0, f"{when}: {service} keeps connections checked out: {pool}"
        assert pool.max == MAX_CONNECTIONS, (when, service, pool)
        assert pool.total <= MAX_CONNECTIONS, f"{when}: {service}'s pool is over its max: {pool}"
    assert connections <= sum(pool.total for pool in both), (
        f"{when}: Redis holds {connections} connections from the services, their pools only {both}"
    )


async def test_repeated_pauses_give_fast_503s_and_leak_no_connections(
    paused_stack: tuple[RestartableRedis, Stack],
) -> None:
    server, stack = paused_stack
    async with shopping(stack, concurrency=CLIENTS * 2) as shop:
        await shop.put_item("mug", stock=1_000_000, price_cents=250)
        sessions = [await shop.new_session() for _ in range(CLIENTS)]

        # Every client once, all at the same time: both pools fill up before the first pause.
        warm_up = Recorder()
        await asyncio.gather(
            *(one_round(shop, auth, n, warm_up) for n, auth in enumerate(sessions))
        )
        assert warm_up.failures() == [], warm_up.failures()
        both, connections = await settled(shop, server)
        assert_no_leak(both, connections, "before the first pause")
        assert connections > 0  # the services' connections are visible by name
        figures: dict[str, object] = {
            "before: inventory / checkout pool": f"{both[0]} / {both[1]}",
            "before: Redis CLIENT LIST (storefront)": connections,
        }

        for cycle in range(1, CYCLES + 1):
            recorder = Recorder()
            stop = asyncio.Event()
            await asyncio.to_thread(server.pause)
            paused_at = time.monotonic()
            try:
                clients = [
                    asyncio.create_task(keep_shopping(shop, auth, n, recorder, stop))
                    for n, auth in enumerate(sessions)
                ]
                await asyncio.sleep(PAUSE_SECONDS / 2)
                during = await pools(shop)
                await asyncio.sleep(PAUSE_SECONDS - (time.monotonic() - paused_at))
                stop.set()
                await asyncio.gather(*clients)
            finally:
                paused_for = time.monotonic() - paused_at
                await asyncio.to_thread(server.unpause)

            # Requests started while Redis was frozen: each failed, as a 503, in bounded time.
            assert recorder.answers, "no request was sent during the pause"
            assert recorder.failed_by_status() == {"503": len(recorder.answers)}, (
                f"cycle {cycle}: every request during the pause must be a 503: "
                f"{recorder.failed_by_status()} of {len(recorder.answers)}"
            )
            for service, pool in zip(("inventory", "checkout"), during, strict=True):
                assert pool.total <= MAX_CONNECTIONS, f"{service} during the pause: {pool}"

            ready_after = await wait_until_ready(shop)
            # All clients at once again: the pools serve the full load after the pause.
            after = Recorder()
            await asyncio.gather(
                *(one_round(shop, auth, n, after) for n, auth in enumerate(sessions))
            )
            assert after.failures() == [], f"cycle {cycle}, after unpause: {after.failures()}"

            both, connections = await settled(shop, server)
            assert_no_leak(both, connections, f"after pause {cycle}")
            figures.update(
                {
                    f"pause {cycle}: paused for": f"{paused_for:.1f} s",
                    f"pause {cycle}: requests meanwhile": len(recorder.answers),
                    f"pause {cycle}: failed by status": recorder.failed_by_status(),
                    f"pause {cycle}: slowest 503": f"{recorder.slowest_failure():.2f} s",
                    f"pause {cycle}: pools during (inv / chk)": f"{during[0]} / {during[1]}",
                    f"pause {cycle}: ready after unpause": f"{ready_after:.2f} s",
                    f"pause {cycle}: pools after (inv / chk)": f"{both[0]} / {both[1]}",
                    f"pause {cycle}: Redis CLIENT LIST after": connections,
                }
            )

    report(
        f"docker pause x{CYCLES}, {CLIENTS} concurrent clients, "
        f"REDIS_MAX_CONNECTIONS={MAX_CONNECTIONS} per service",
        figures,
    )
    assert_no_tracebacks(stack)
