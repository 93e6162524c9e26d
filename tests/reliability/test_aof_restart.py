"""Redis with AOF restarted under continuous checkouts: every order a client was told is
paid (200) is still there, and paid, afterwards; meanwhile requests fail only as 503.

Redis runs with the chart's persistence (`appendonly yes`, `appendfsync` from
charts/storefront/values.yaml, `everysec` today) and is taken down two ways:

- `docker stop` + `docker start` (SIGTERM: Redis writes and fsyncs the AOF before it exits).
  An acknowledged order lost here would be a bug: the test asserts none is.
- `docker kill` + `docker start` (SIGKILL; the container's /data survives). Redis writes
  each command to the AOF file before it replies, so a killed process loses nothing the
  kernel already holds; everysec's fsync only matters when the machine itself goes down
  (power, kernel, node), which a container cannot show. The test measures what is lost and
  prints it; with `appendfsync always` it asserts nothing is.

Loading the AOF is slowed down (`key-load-delay` over some padding keys in the AOF's RDB
base), as a production-sized dataset would be, so that the services also meet Redis's
`LOADING` replies (redis-py's BusyLoadingError): they must answer 503 to those too.

Whatever the fault, the stock stays consistent: the units gone from what is on hand are
exactly those of the paid orders, and the reserved units those of the pending orders, so no
checkout survives half-applied.

Run with `-rP` for the figures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import orjson
import pytest
import yaml

from cartlib.store.keys import Keys
from tests._redis import RestartableRedis
from tests.reliability._faults import (
    Recorder,
    errors_since,
    redis_and_stack,
    redis_error_counts,
    report,
    shopping,
)
from tests.services._outage import RECOVERY_TIMEOUT, assert_no_tracebacks
from tests.services._stack import Stack
from tests.services.conftest import Shop

CHART_VALUES: Final = Path(__file__).parents[2] / "charts/storefront/values.yaml"
# The fsync policy the chart deploys Redis with.
APPENDFSYNC: Final[str] = yaml.safe_load(CHART_VALUES.read_text())["redis"]["appendfsync"]

PADDING_KEYS = 10_000
KEY_LOAD_DELAY_MICROSECONDS = 150  # per key of the RDB base: about 1.5 s of LOADING
AOF_ARGS: Final = (
    "--appendonly",
    "yes",
    "--appendfsync",
    APPENDFSYNC,
    # Redis's own test knobs: a delay per key loaded, and answering clients (LOADING) every
    # KiB read rather than every 2 MiB.
    "--key-load-delay",
    str(KEY_LOAD_DELAY_MICROSECONDS),
    "--loading-process-events-interval-bytes",
    "1024",
)

CLIENTS = 8
STOCK = 1_000_000
BEFORE_FAULT_SECONDS = 1.5
AFTER_RECOVERY_SECONDS = 1.0
BACKOFF_SECONDS = 0.05  # a client's pause after a failure (Retry-After says 1 s; finer here)
KEYS: Final = Keys()


@dataclass(frozen=True, slots=True)
class Acknowledged:
    """A checkout the client got a 200 for."""

    order_id: str
    auth: dict[str, str]
    at: float  # time.monotonic() of the answer


def pad_the_aof(server: RestartableRedis) -> None:
    """Padding keys, rewritten into the AOF's RDB base, where key-load-delay applies."""
    client = server.client(socket_timeout=30)
    try:
        with client.pipeline(transaction=False) as pipe:
            for n in range(PADDING_KEYS):
                pipe.set(f"padding:{n}", "x")
            pipe.execute()
        client.bgrewriteaof()
        deadline = time.monotonic() + 30
        while True:
            info = client.info("persistence")
            if not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]:
                break
            assert time.monotonic() < deadline, f"the AOF rewrite did not finish: {info}"
            time.sleep(0.05)
        assert info["aof_last_bgrewrite_status"] == "ok", info
    finally:
        client.close()


@pytest.fixture(scope="module")
def aof_stack() -> Iterator[tuple[RestartableRedis, Stack]]:
    with redis_and_stack(AOF_ARGS) as (server, stack):
        pad_the_aof(server)
        yield server, stack


async def keep_buying(
    shop: Shop,
    auth: dict[str, str],
    item: str,
    recorder: Recorder,
    acknowledged: list[Acknowledged],
    stop: asyncio.Event,
) -> None:
    """Add one unit, check out, again and again; remember every order answered 200."""
    while not stop.is_set():
        added = await recorder.send("POST /cart/items", lambda: shop.add(auth, item))
        if added is None or added.status_code != 201:
            await asyncio.sleep(BACKOFF_SECONDS)
            continue
        paid = await recorder.send("POST /checkout", lambda: shop.pay(auth))
        if paid is not None and paid.status_code == 200:
            order_id = paid.json()["order"]["id"]
            acknowledged.append(Acknowledged(order_id, auth, time.monotonic()))
        else:
            await asyncio.sleep(BACKOFF_SECONDS)


async def is_paid(shop: Shop, order: Acknowledged) -> bool:
    """The order, read back through the checkout service, exists and is paid."""
    response = await shop.client.get(f"{shop.checkout}/orders/{order.order_id}", headers=order.auth)
    if response.status_code == 404:
        return False
    assert response.status_code == 200, response.text
    return bool(response.json()["status"] == "paid")


@dataclass(frozen=True, slots=True)
class StoredOrders:
    """What Redis holds for one item after the restart."""

    stock: int  # on hand
    reserved: int
    units_by_status: Counter[str]
    ids_by_status: dict[str, set[str]]


def stored_orders(server: RestartableRedis, item: str) -> StoredOrders:
    client = server.client(socket_timeout=10, decode_responses=True)
    try:
        stock = int(client.hget(KEYS.stock, item) or 0)
        reserved = int(client.hget(KEYS.reserved, item) or 0)
        units: Counter[str] = Counter()
        ids: dict[str, set[str]] = {}
        for key in client.scan_iter(match=KEYS.order("*"), count=1000):
            order = client.hgetall(key)
            lines = orjson.loads(order["items"])
            quantity = sum(line["quantity"] for line in lines if line["id"] == item)
            if quantity:
                status = str(order["status"])
                units[status] += quantity
                ids.setdefault(status, set()).add(str(key).removeprefix(KEYS.order("")))
    finally:
        client.close()
    return StoredOrders(stock, reserved, units, ids)


def take_down_and_bring_back(server: RestartableRedis, fault: str) -> None:
    if fault == "sigterm":
        server.stop()  # docker stop: SIGTERM, and SIGKILL only after 10 s
    else:
        server.kill()
    server.start()  # waits until PING answers, i.e. the AOF is loaded


@pytest.mark.docker
@pytest.mark.parametrize("fault", ["sigterm", "sigkill"])
async def test_acknowledged_orders_survive_a_redis_restart(
    aof_stack: tuple[RestartableRedis, Stack], fault: str
) -> None:
    server, stack = aof_stack
    item = f"aof-{fault}"
    acknowledged: list[Acknowledged] = []
    recorder = Recorder()
    async with shopping(stack) as shop:
        await shop.put_item(item, stock=STOCK, price_cents=100)
        sessions = [await shop.new_session() for _ in range(CLIENTS)]
        errors_before = await redis_error_counts(shop)
        stop = asyncio.Event()
        clients = [
            asyncio.create_task(keep_buying(shop, auth, item, recorder, acknowledged, stop))
            for auth in sessions
        ]
        try:
            await asyncio.sleep(BEFORE_FAULT_SECONDS)
            fault_at = time.monotonic()
            acknowledged_before = len(acknowledged)
            await asyncio.to_thread(take_down_and_bring_back, server, fault)
            redis_back_after = time.monotonic() - fault_at
            # Let the clients find out that Redis is back, then buy a little longer.
            deadline = time.monotonic() + RECOVERY_TIMEOUT
            while not any(order.at > fault_at for order in acknowledged[acknowledged_before:]):
                if time.monotonic() > deadline:
                    pytest.fail(f"no checkout succeeded {RECOVERY_TIMEOUT} s after the restart")
                await asyncio.sleep(0.05)
            await asyncio.sleep(AFTER_RECOVERY_SECONDS)
        finally:
            stop.set()
            await asyncio.gather(*clients)

        lost = [order for order in acknowledged if not await is_paid(shop, order)]
        errors = errors_since(errors_before, await redis_error_counts(shop))
    stored = await asyncio.to_thread(stored_orders, server, item)

    durable = fault == "sigterm" or APPENDFSYNC == "always"
    outage = recorder.outage()
    paid_unacknowledged = stored.ids_by_status.get("paid", set()) - {
        order.order_id for order in acknowledged
    }
    report(
        f"Redis {fault} with appendonly yes, appendfsync {APPENDFSYNC}, {CLIENTS} clients "
        "buying continuously",
        {
            "orders acknowledged (200)": f"{len(acknowledged)} "
            f"({acknowledged_before} before the fault)",
            "acknowledged orders lost": f"{len(lost)} {[order.order_id for order in lost]}",
            "failed requests by status": recorder.failed_by_status(),
            "Redis errors seen by the services": errors,
            "Redis answering PING after the fault": f"{redis_back_after:.2f} s",
            "clients failing (first failure to recovery)": (
                f"{outage[1] - outage[0]:.2f} s" if outage else "no failure"
            ),
            "slowest failed request": f"{recorder.slowest_failure():.2f} s",
            "paid, but the client got a 503": len(paid_unacknowledged),
            "pending (the reaper gives their stock back)": len(
                stored.ids_by_status.get("pending", set())
            ),
        },
    )

    statuses = set(recorder.failed_by_status())
    assert "no answer" not in statuses, "a request hung or its connection broke"
    assert not any(status.startswith("5") and status != "503" for status in statuses), statuses
    assert recorder.failures(), f"Redis {fault} did not fail a single request"
    # The AOF replays whole scripts (a truncated tail is dropped whole), so every unit gone
    # from what is on hand belongs to a paid order, and every reserved one to a pending order.
    assert STOCK - stored.stock == stored.units_by_status["paid"], stored
    assert stored.reserved == stored.units_by_status["pending"], stored
    if durable:
        assert lost == [], f"acknowledged orders lost after {fault}: {lost}"
        # A 400 (empty cart) would mean an acknowledged add-to-cart was lost.
        assert statuses <= {"503"}, recorder.failed_by_status()
        # The services met LOADING while the AOF loaded, and answered it with 503s too.
        assert errors.get("BusyLoadingError", 0) > 0, errors
    assert_no_tracebacks(stack)
