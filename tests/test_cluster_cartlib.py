"""cartlib on a real Redis Cluster and Valkey cluster (3 masters, 3 replicas): every invariant
of the standalone suite, with carts and stock in different slots (docs/redis-cluster.md).

One cluster per server for the module; each test uses its own key prefix.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import orjson
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from cartlib.settings import Settings
from cartlib.store.errors import (
    CartError,
    CheckoutExpired,
    EmptyCart,
    IdempotencyKeyReused,
    InsufficientStock,
    StoreUnavailable,
)
from cartlib.store.keys import SESSION_BUCKETS, ClusterKeys
from cartlib.store.orders import FinishedCheckout, PaymentResult
from cartlib.store.redis import create_redis
from cartlib.store.scripts.shared import Committed, Released, Replicated, Reservation
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn
from tests._cluster import (
    ClusterDeployment,
    break_replication,
    node_of,
    replica_of,
    restore_replication,
    running_cluster,
)
from tests.cartlib.conftest import make_settings
from tests.cartlib.store.test_interleavings import (
    FAR_FUTURE_MS,
    ITEMS,
    MAX_LINES,
    MAX_QUANTITY,
    SESSIONS,
    Run,
    ScheduledPayments,
    admin,
    check_stock_conserved,
    pause,
    reaper,
    shopper,
)
from tests.services._stack import running_stack
from tests.services.conftest import Shop

pytestmark = pytest.mark.docker

SCHEDULES = 60
# Schedules run with the stock slot's replica cut off.
CUT_OFF_SCHEDULES = 15


@pytest.fixture(scope="module", params=["7", "valkey8"], ids=["redis7", "valkey8"])
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterDeployment]:
    with running_cluster(request.param) as deployment:
        yield deployment


def cluster_settings(cluster: ClusterDeployment, **overrides: Any) -> Settings:
    return make_settings(
        "redis://ignored:6379/0",
        redis_cluster_nodes=cluster.seeds,
        redis_password=cluster.password,
        redis_key_prefix=f"t{secrets.token_hex(3)}:",
        **overrides,
    )


@pytest.fixture
async def client(cluster: ClusterDeployment) -> AsyncIterator[Redis]:
    """One cluster client for the test's stores (as one service process has)."""
    redis_client = create_redis(cluster_settings(cluster))
    yield redis_client
    await redis_client.aclose()


@pytest.fixture
async def patient_client(cluster: ClusterDeployment) -> AsyncIterator[Redis]:
    """A client whose callers wait the longest pool timeout for one of its in-flight places:
    a test of 1,000 concurrent calls on a loaded machine slows down instead of shedding
    calls with 503 (shedding is tested elsewhere)."""
    redis_client = create_redis(cluster_settings(cluster, redis_pool_timeout=30))
    yield redis_client
    await redis_client.aclose()


StoresFor = Callable[[Settings, Redis], Stores]


@pytest.fixture
async def stores_for() -> AsyncIterator[StoresFor]:
    """Stores on a shared client, as one service process has; what they open besides the
    client (the per-master clients of WAIT) is closed after the test."""
    opened: list[Stores] = []

    def build(settings: Settings, client: Redis) -> Stores:
        stores = Stores.from_settings(settings, redis=client)
        opened.append(stores)
        return stores

    yield build
    for stores in opened:
        await stores.orders.aclose()


class Approve:
    """Approves every charge; counts them per reference (a retry must reuse its order's)."""

    def __init__(self) -> None:
        self.references: list[str] = []

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        self.references.append(reference)
        await asyncio.sleep(0)
        return PaymentResult(approved=token == "tok_visa", reason="card declined")


async def checkout_until_answered(
    stores: Stores, session: str, key: str, answers: dict[int, int], pause: float
) -> FinishedCheckout | None:
    """A client retrying its Idempotency-Key (40 tries at most) until an answer other than
    503; every refusal must be a retriable 503. Each answer is counted in `answers`."""
    for _ in range(40):
        try:
            response = await stores.orders.checkout(
                session, payment_token="tok_visa", processor=Approve(), idempotency_key=key
            )
        except CartError as error:
            assert isinstance(error, StoreUnavailable), error  # 503
            answers[503] = answers.get(503, 0) + 1
            await asyncio.sleep(pause)
            continue
        answers[response.status_code] = answers.get(response.status_code, 0) + 1
        return response
    return None


class MasterStats:
    """Commandstats of the masters, through one connection to each opened beforehand, so
    that the counting sends nothing but CONFIG RESETSTAT and INFO."""

    def __init__(self, cluster: ClusterDeployment) -> None:
        self.clients = [node.client() for node in cluster.masters()]
        for node_client in self.clients:
            node_client.ping()

    def reset(self) -> None:
        for node_client in self.clients:
            node_client.config_resetstat()

    def commands(self) -> dict[str, int]:
        """Calls per command summed over the masters (INFO and CONFIG left out: ours)."""
        totals: dict[str, int] = {}
        for node_client in self.clients:
            stats: Any = node_client.info("commandstats")
            for name, values in stats.items():
                command = name.removeprefix("cmdstat_")
                if not command.startswith(("info", "config")):
                    totals[command] = totals.get(command, 0) + int(values["calls"])
        return totals

    def close(self) -> None:
        for node_client in self.clients:
            node_client.close()


@pytest.fixture
def stats(cluster: ClusterDeployment) -> Iterator[MasterStats]:
    counter = MasterStats(cluster)
    yield counter
    counter.close()


# What a client may send besides the scripts, per operation: script loading, topology
# refreshes, pings. (Opening a connection, AUTH and CLIENT SETNAME, is once per connection;
# the commands the scripts run count in commandstats too, and are not round trips.)
EXTRA_ROUND_TRIPS = frozenset(
    {
        "script|load",
        "eval",
        "ping",
        "cluster|slots",
        "cluster|shards",
        "cluster|nodes",
        "command",
        "command|docs",
        "readonly",
        "select",
        "asking",
    }
)


async def stock_state(client: Redis, keys: ClusterKeys, item: str) -> tuple[int, int]:
    on_hand = int(await client.hget(keys.stock, item) or 0)
    reserved = int(await client.hget(keys.reserved, item) or 0)
    return on_hand, reserved


async def put(stores: Stores, item: str, stock: int, price_cents: int = 100) -> None:
    await stores.catalog.put(item, ItemIn(name=item, price_cents=price_cents, stock=stock))


def keys_of(stores: Stores) -> ClusterKeys:
    keys = ClusterKeys(stores.settings.redis_key_prefix)
    return keys


# --- settings --------------------------------------------------------------------------------


def test_cluster_and_sentinels_together_are_refused() -> None:
    with pytest.raises(ValueError, match="REDIS_SENTINELS and REDIS_CLUSTER_NODES"):
        make_settings("redis://x:6379/0", redis_cluster_nodes="a:7000", redis_sentinels="b:26379")
    settings = make_settings("redis://x:6379/0", redis_cluster_nodes="a:7000,[::1]:7001")
    assert settings.redis_cluster_nodes == (("a", 7000), ("::1", 7001))
    assert settings.uses_cluster and settings.wait_replicas == 1  # a cluster has replicas


# --- cart operations -------------------------------------------------------------------------


async def test_a_thousand_concurrent_adds_to_one_cart_give_a_thousand_in_one_round_trip_each(
    stores_for: StoresFor, cluster: ClusterDeployment, patient_client: Redis, stats: MasterStats
) -> None:
    settings = cluster_settings(cluster, cart_max_quantity=100_000)
    client = patient_client
    stores = stores_for(settings, client)
    await put(stores, "mug", 10_000)

    async def traffic(adds: int) -> tuple[list[Any], list[bytes]]:
        changes = await asyncio.gather(*(stores.carts.add("one-cart", "mug") for _ in range(adds)))
        await asyncio.gather(*(stores.carts.set(f"other-{n}", "mug", 2) for n in range(100)))
        reads = await asyncio.gather(*(stores.carts.get("one-cart") for _ in range(100)))
        return changes, reads

    # Warm-up: the connections opened, the scripts loaded on each master (SCRIPT LOAD after
    # NOSCRIPT), the stock snapshot read; all once per process, not per operation.
    await traffic(300)
    await client.delete(keys_of(stores).cart("one-cart"))
    stats.reset()

    changes, reads = await traffic(1000)

    assert sorted(change.quantity for change in changes) == list(range(1, 1001))
    assert orjson.loads(reads[-1]) == [{"id": "mug", "quantity": 1000}]
    commands = stats.commands()
    # 1,200 cart operations, 1,200 scripts on the masters and no other command sent (the
    # commands that run inside the scripts count in commandstats too: left out).
    assert commands.get("evalsha") == 1200, commands
    assert not set(commands) & EXTRA_ROUND_TRIPS, commands


async def test_an_add_is_checked_against_the_snapshot_and_checkout_has_the_last_word(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    stores = stores_for(cluster_settings(cluster, catalog_cache_ttl_seconds=3600), client)
    with pytest.raises(CartError, match="not found"):
        await stores.carts.add("s1", "lamp")
    await put(stores, "lamp", 2)
    # This process changed the catalog: it reads it again.
    assert (await stores.carts.add("s1", "lamp", 2)).quantity == 2
    with pytest.raises(InsufficientStock):
        await stores.carts.add("s1", "lamp")
    # Another process sells the lamps; this one's snapshot (TTL one hour) still says 2.
    other = stores_for(stores.settings, client)
    await other.carts.add("s2", "lamp", 2)
    paid = await other.orders.checkout("s2", payment_token="tok_visa", processor=Approve())
    assert paid.status_code == 200
    assert (await stores.carts.add("s3", "lamp", 2)).quantity == 2  # accepted on the snapshot
    refused = await stores.orders.checkout("s3", payment_token="tok_visa", processor=Approve())
    assert refused.status_code == 409
    assert b"lamp (requested 2, available 0)" in refused.body
    assert orjson.loads(await stores.carts.get("s3")) == [{"id": "lamp", "quantity": 2}]
    assert await stock_state(client, keys_of(stores), "lamp") == (0, 0)


async def test_cart_traffic_spreads_over_the_masters_beside_standalone(
    stores_for: StoresFor,
    cluster: ClusterDeployment,
    client: Redis,
    stats: MasterStats,
    redis7_url: str,
) -> None:
    """2,000 adds over 200 carts and 100 checkouts, on the cluster and on a standalone Redis 7
    in the same run: the cluster's cart scripts spread over the three masters, one EVALSHA per
    operation. The throughputs are printed side by side (a ratio, not asserted: the machine is
    shared)."""
    sessions = [f"spread-{n}" for n in range(200)]

    async def run(stores: Stores) -> tuple[float, float]:
        await put(stores, "mug", 1_000_000)
        await stores.carts.add("warm-up", "mug")
        gate = asyncio.Semaphore(64)

        async def add(session: str) -> None:
            async with gate:
                await stores.carts.add(session, "mug")

        started = time.perf_counter()
        await asyncio.gather(*(add(sessions[n % 200]) for n in range(2000)))
        adds = 2000 / (time.perf_counter() - started)
        started = time.perf_counter()
        await asyncio.gather(
            *(
                stores.orders.checkout(session, payment_token="tok_visa", processor=Approve())
                for session in sessions[:100]
            )
        )
        return adds, 100 / (time.perf_counter() - started)

    standalone = Stores.from_settings(make_settings(redis7_url))
    try:
        standalone_rates = await run(standalone)
    finally:
        await standalone.aclose()
    cluster_stores = stores_for(cluster_settings(cluster), client)
    await put(cluster_stores, "mug", 1_000_000)
    # Warm-up: every script loaded on every master, the connections open.
    await asyncio.gather(*(cluster_stores.carts.add(session, "mug") for session in sessions))
    await asyncio.gather(
        *(
            cluster_stores.orders.checkout(session, payment_token="tok_visa", processor=Approve())
            for session in sessions
        )
    )
    stats.reset()
    cluster_rates = await run(cluster_stores)
    per_master = [
        int(node_client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))
        for node_client in stats.clients
    ]
    # 2,000 adds, 100 checkouts x 4, and 4 more: the item's PUT and its read-back, the
    # snapshot read again after it, the warm-up add.
    assert sum(per_master) == 2000 + 400 + 4, per_master
    assert all(calls > 2000 // 10 for calls in per_master), per_master
    print(  # noqa: T201  (pytest -rP shows it)
        f"{cluster.version}: adds/s cluster {cluster_rates[0]:.0f} vs standalone "
        f"{standalone_rates[0]:.0f} (x{cluster_rates[0] / standalone_rates[0]:.2f}); "
        f"checkouts/s cluster {cluster_rates[1]:.0f} vs standalone {standalone_rates[1]:.0f} "
        f"(x{cluster_rates[1] / standalone_rates[1]:.2f}); EVALSHA per master {per_master}"
    )


# --- checkout --------------------------------------------------------------------------------


async def test_n_units_sell_exactly_n_under_contention(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis, stats: MasterStats
) -> None:
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    sessions = [f"buyer-{n}" for n in range(60)]
    payments = Approve()

    async def sale(item: str, units: int) -> list[Any]:
        await put(stores, item, units, price_cents=250)
        for session in sessions:
            await stores.carts.add(session, item)
        stats.reset()  # counts the checkouts alone
        return await asyncio.gather(
            *(
                stores.orders.checkout(session, payment_token="tok_visa", processor=payments)
                for session in sessions
            )
        )

    # Warm-up as in the cart test: connections, scripts on each master (both outcomes).
    await sale("warm-up", 30)
    for session in sessions:
        await stores.carts.remove(session, "warm-up")
    responses = await sale("cap", 20)
    commands = stats.commands()
    codes = [response.status_code for response in responses]
    assert codes.count(200) == 20 and codes.count(409) == 40, codes
    assert await stock_state(client, keys, "cap") == (0, 0)
    assert await client.xlen(keys.orders_stream) == 20 + 30
    for session, response in zip(sessions, responses, strict=True):
        cart = orjson.loads(await stores.carts.get(session))
        assert cart == ([] if response.status_code == 200 else [{"id": "cap", "quantity": 1}])
    # A paid checkout: 4 scripts (A, B on the stock slot, C, D); a shortage: 3 (A, B, undo A).
    assert commands.get("evalsha") == 20 * 4 + 40 * 3, commands
    # WAIT (the cluster default, REDIS_WAIT_REPLICAS=1) after A (every checkout), C and D
    # (paid ones), each pipelined with its script on the owner's connection: no round trip
    # of its own.
    assert commands.get("wait") == 60 + 20 * 2, commands
    assert not set(commands) & EXTRA_ROUND_TRIPS, commands


async def test_one_cart_gives_one_order(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    await put(stores, "pen", 100)
    await stores.carts.add("tabs", "pen", 3)
    results = await asyncio.gather(
        *(
            stores.orders.checkout("tabs", payment_token="tok_visa", processor=Approve())
            for _ in range(10)
        ),
        return_exceptions=True,
    )
    paid = [r for r in results if not isinstance(r, BaseException) and r.status_code == 200]
    assert len(paid) == 1
    assert all(isinstance(r, EmptyCart) for r in results if r not in paid)
    assert await stock_state(client, keys, "pen") == (97, 0)
    assert await client.xlen(keys.orders_stream) == 1


async def test_a_retried_key_replays_and_another_payment_on_it_is_refused(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    await put(stores, "mug", 10)
    await stores.carts.add("s", "mug", 2)
    payments = Approve()
    first = await stores.orders.checkout(
        "s", payment_token="tok_visa", processor=payments, idempotency_key="k1"
    )
    again = await stores.orders.checkout(
        "s", payment_token="tok_visa", processor=payments, idempotency_key="k1"
    )
    assert first.status_code == 200 and again == first
    with pytest.raises(IdempotencyKeyReused):
        await stores.orders.checkout(
            "s", payment_token="tok_other", processor=payments, idempotency_key="k1"
        )
    order_id = orjson.loads(first.body)["order"]["id"]
    assert payments.references == [order_id]
    assert orjson.loads(await stores.orders.get_json("s", order_id))["status"] == "paid"
    assert await stock_state(client, keys, "mug") == (8, 0)
    assert await client.xlen(keys.orders_stream) == 1


async def test_a_declined_checkout_gives_everything_back(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    await put(stores, "mug", 5)
    await stores.carts.add("s", "mug", 2)
    declined = await stores.orders.checkout(
        "s", payment_token="tok_declined", processor=Approve(), idempotency_key="k"
    )
    assert declined.status_code == 402
    assert orjson.loads(await stores.carts.get("s")) == [{"id": "mug", "quantity": 2}]
    assert await stock_state(client, keys, "mug") == (5, 0)
    assert await client.get(keys.declines("s")) == b"1"


async def test_the_reaper_gives_back_what_a_lost_release_left_held_and_nothing_else(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    """A declined checkout whose `saga_release` was lost (what the promoted replica holds
    after a failover of the stock master: tests/test_cluster_faults.py makes it with a real
    one) next to a checkout still paying and a paid one: the reaper's sweep of the stock
    slot gives back the units of the order pending nowhere, and only those."""
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    transport: Any = stores.orders.flow.transport
    await put(stores, "mug", 10)
    await stores.carts.add("paid", "mug", 1)
    paid = await stores.orders.checkout("paid", payment_token="tok_visa", processor=Approve())
    assert paid.status_code == 200

    release = transport.release_script

    async def lost(**_: Any) -> Released:
        return Released()

    transport.release_script = lost
    await stores.carts.add("declined", "mug", 2)
    declined = await stores.orders.checkout(
        "declined", payment_token="tok_declined", processor=Approve(), idempotency_key="k"
    )
    assert declined.status_code == 402
    transport.release_script = release

    await stores.carts.add("paying", "mug", 3)
    payments = Approve()
    die_before(stores, "charge", payments)
    with pytest.raises(Died):
        await stores.orders.checkout("paying", payment_token="tok_visa", processor=payments)
    assert await stock_state(client, keys, "mug") == (9, 5)

    # The sweep alone: the order still paying keeps its units, the paid one was not held.
    assert await transport.release_orphans(FAR_FUTURE_MS) == 1
    assert await stock_state(client, keys, "mug") == (9, 3)
    assert await transport.release_orphans(FAR_FUTURE_MS) == 0
    # The reaper: the one still paying is ended by its session slot's pass.
    assert await stores.orders.release_expired(now_ms=FAR_FUTURE_MS) == 1
    assert await stock_state(client, keys, "mug") == (9, 0)
    assert await client.zcard(keys.reservations) == 0
    assert orjson.loads(await stores.carts.get("declined")) == [{"id": "mug", "quantity": 2}]
    assert orjson.loads(await stores.carts.get("paying")) == [{"id": "mug", "quantity": 3}]


async def test_the_reaper_sells_again_a_paid_order_whose_sale_was_lost(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    """With no replica waited for (`REDIS_WAIT_REPLICAS=0`), a step C acknowledged and then
    lost in a failover of the stock master leaves the order paid and its units `reserved`
    (made here by a C that answers without running): the reaper's sweep commits it again,
    once: the units leave what is on hand and the sale is in the stream."""
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    transport: Any = stores.orders.flow.transport
    await put(stores, "mug", 10)
    commit = transport.commit_script

    async def lost(**_: Any) -> Replicated[Committed]:
        return Replicated(Committed(Reservation((), 0)), confirmed=True)

    transport.commit_script = lost
    await stores.carts.add("paid", "mug", 2)
    paid = await stores.orders.checkout("paid", payment_token="tok_visa", processor=Approve())
    transport.commit_script = commit
    assert paid.status_code == 200
    order_id = orjson.loads(paid.body)["order"]["id"]
    assert orjson.loads(await stores.orders.get_json("paid", order_id))["status"] == "paid"
    assert await stock_state(client, keys, "mug") == (10, 2)
    assert await client.xlen(keys.orders_stream) == 0

    assert await transport.release_orphans(FAR_FUTURE_MS) == 1
    assert await stock_state(client, keys, "mug") == (8, 0)
    assert await client.xlen(keys.orders_stream) == 1
    assert await client.zcard(keys.reservations) == 0
    assert await transport.release_orphans(FAR_FUTURE_MS) == 0
    assert await stock_state(client, keys, "mug") == (8, 0)


# --- crash injection between the saga's steps ------------------------------------------------


class Died(Exception):
    """The service process dying at a step boundary."""


# The saga's steps, as the cluster transport's typed scripts (`cartlib.store.saga.SagaCheckout`);
# steps C and D run with WAIT (the cluster default) inside theirs.
STEPS = ("reserve_script", "charge", "commit_script", "finish_script")


def die_before(stores: Stores, step: str, payments: Approve) -> None:
    """Make this process die just before `step` (after every step before it ran)."""

    async def dead(*_: Any, **__: Any) -> Any:
        raise Died(step)

    if step == "charge":
        payments.charge = dead  # type: ignore[method-assign]
        return
    setattr(stores.orders.flow.transport, step, dead)


@pytest.mark.parametrize("step", STEPS)
@pytest.mark.parametrize("repair", ["reaper", "retry"])
async def test_a_process_dying_between_steps_is_repaired_with_no_unit_lost_or_invented(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis, step: str, repair: str
) -> None:
    settings = cluster_settings(cluster)
    dying = stores_for(settings, client)
    keys = keys_of(dying)
    await put(dying, "mug", 10)
    await dying.carts.add("s", "mug", 3)
    payments = Approve()
    die_before(dying, step, payments)
    with pytest.raises(Died):
        await dying.orders.checkout(
            "s", payment_token="tok_visa", processor=payments, idempotency_key="k"
        )

    fresh = stores_for(settings, client)  # a new process: nothing of the dead one's state
    sold_before_d = step == "finish_script"
    if repair == "reaper":
        assert await fresh.orders.release_expired(now_ms=FAR_FUTURE_MS) == 1
        assert await fresh.orders.release_expired(now_ms=FAR_FUTURE_MS) == 0
        replay = await fresh.orders.checkout(
            "s", payment_token="tok_visa", processor=Approve(), idempotency_key="k"
        )
        expected_code = 200 if sold_before_d else 409
        assert replay.status_code == expected_code
        sold = 3 if sold_before_d else 0
    else:
        retry_payments = Approve()
        finished = await fresh.orders.checkout(
            "s", payment_token="tok_visa", processor=retry_payments, idempotency_key="k"
        )
        assert finished.status_code == 200
        order_id = orjson.loads(finished.body)["order"]["id"]
        assert set(payments.references + retry_payments.references) == {order_id}
        assert await fresh.orders.release_expired(now_ms=FAR_FUTURE_MS) == 0
        sold = 3
    on_hand, reserved = await stock_state(client, keys, "mug")
    streamed = await client.xlen(keys.orders_stream)
    assert (on_hand, reserved, streamed) == (10 - sold, 0, 1 if sold else 0)
    cart = orjson.loads(await fresh.carts.get("s"))
    assert cart == ([] if sold else [{"id": "mug", "quantity": 3}])
    assert await client.zcard(keys.session_pending("s")) == 0


async def test_an_attempt_late_at_step_b_never_reserves_for_an_order_cancelled_meanwhile(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    """One order, two attempts (a retry of its key while the first is still on its way): the
    retry finds too little stock and cancels the order; a restock follows; the first attempt's
    step B then arrives. It must reserve nothing: found by the interleaving schedules (a sale
    in the stream for an order deleted as short, and a 500), fixed by a tombstone at B."""
    settings = cluster_settings(cluster)
    first = stores_for(settings, client)
    keys = keys_of(first)
    await put(first, "mug", 1)
    await first.carts.add("s", "mug")
    await put(first, "mug", 0)
    gate = asyncio.Event()
    transport: Any = first.orders.flow.transport
    reserve = transport.reserve_script

    async def late(**named: Any) -> Any:
        await gate.wait()
        return await reserve(**named)

    transport.reserve_script = late
    payments = Approve()
    slow = asyncio.create_task(
        first.orders.checkout(
            "s", payment_token="tok_visa", processor=payments, idempotency_key="k"
        )
    )
    while not await client.zcard(keys.session_pending("s")):  # step A done
        await asyncio.sleep(0.01)
    retry = await stores_for(settings, client).orders.checkout(
        "s", payment_token="tok_visa", processor=payments, idempotency_key="k"
    )
    assert retry.status_code == 409
    await put(first, "mug", 5)
    gate.set()
    with pytest.raises(CheckoutExpired):
        await slow
    assert payments.references == []
    assert await stock_state(client, keys, "mug") == (5, 0)
    assert await client.xlen(keys.orders_stream) == 0
    assert orjson.loads(await first.carts.get("s")) == [{"id": "mug", "quantity": 1}]


# --- the interleaving schedules of the stock model, in cluster mode ---------------------------

AUDIT = """
local out = {stock = redis.call('HGETALL', KEYS[1]), reserved = redis.call('HGETALL', KEYS[2]),
  held = {}}
for _, key in ipairs(redis.call('KEYS', ARGV[1])) do
  local record = redis.call('HMGET', key, 'status', 'items')
  if record[1] == 'reserved' then
    out.held[#out.held + 1] = record[2]
  end
end
return cjson.encode(out)
"""


def as_dict(flat: Any) -> dict[str, int]:
    if not flat:
        return {}
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


async def audit(client: Redis, keys: ClusterKeys, run: Run) -> None:
    """The stock slot read in one atomic step (the reservation records live there): per item
    on hand >= 0 and reserved = the units of the reservations held; each cart within caps."""
    raw = await client.eval(AUDIT, 2, keys.stock, keys.reserved, keys.reservation("*"))
    state = orjson.loads(raw)
    on_hand, reserved = as_dict(state["stock"]), as_dict(state["reserved"])
    held: dict[str, int] = {}
    for items in state["held"]:
        for line in orjson.loads(items):
            held[line["id"]] = held.get(line["id"], 0) + line["quantity"]
    for item in ITEMS:
        assert on_hand.get(item, 0) >= 0, ("negative stock", item, on_hand)
        assert reserved.get(item, 0) == held.get(item, 0), ("reserved", item, reserved, held)
    for session in SESSIONS:
        cart: dict[bytes, bytes] = await client.hgetall(keys.cart(session))  # type: ignore[assignment]
        lines = {item: int(units) for item, units in cart.items()}
        assert len(lines) <= MAX_LINES, ("too many lines", lines)
        assert all(1 <= units <= MAX_QUANTITY for units in lines.values()), ("line cap", lines)
    run.snapshots += 1


async def auditor(client: Redis, keys: ClusterKeys, run: Run) -> None:
    for _ in range(run.rng.randint(1, 4)):
        await pause(run.rng, longest=20)
        await audit(client, keys, run)


async def run_schedule(stores: Stores, client: Redis, run: Run) -> tuple[int, int]:
    """One schedule, then its checks; returns (orders answered 200, sales answered 503)."""
    keys = keys_of(stores)
    for item in ITEMS:
        await put(stores, item, 6)
        run.sets[item] = [(6, 0, time.monotonic_ns())]
    payments = ScheduledPayments(run)
    actors: list[Awaitable[None]] = [admin(stores, run, item) for item in ITEMS]
    actors += [shopper(stores, run, payments, f"shopper{n}") for n in range(4)]
    actors += [reaper(stores, run), auditor(client, keys, run)]
    await asyncio.gather(*actors)
    await stores.orders.release_expired(now_ms=FAR_FUTURE_MS)
    await audit(client, keys, run)
    for session in SESSIONS:
        assert await client.zcard(keys.session_pending(session)) == 0
    assert not any(int(v) for v in await client.hvals(keys.reserved)), "still reserved"
    # The ledger: every order answered 200 sold once. A sale no client got a 200 for is one
    # whose checkout was answered 503 after its sale (a WAIT short of replicas after step C
    # or D, or a timeout), left pending and finished as paid by the reaper: at most one per
    # such answer, and paid after its charge was approved.
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(keys.orders_stream)  # type: ignore[assignment]
    ledger = [fields[b"order_id"].decode() for _, fields in entries]
    assert len(ledger) == len(set(ledger)), ("sold twice", ledger)
    answered = len(run.paid)
    assert set(run.paid) <= set(ledger), ("answered 200, not sold", ledger, run.paid)
    unanswered = [
        (fields, order_id)
        for (_, fields), order_id in zip(entries, ledger, strict=True)
        if order_id not in run.paid
    ]
    assert len(unanswered) <= run.unknown_outcomes, (
        "sold, yet its checkout was neither answered 200 nor 503",
        [order_id for _, order_id in unanswered],
        run.paid,
    )
    ended = time.monotonic_ns()
    for fields, order_id in unanswered:
        assert order_id in run.charged_at, ("sold without an approved charge", order_id)
        # Counted in the stock like any sale: between its approval and now.
        run.paid[order_id] = orjson.loads(fields[b"items"])
        run.completions[order_id] = (run.charged_at[order_id], ended)
    for (_, fields), order_id in zip(entries, ledger, strict=True):
        order = keys.session_order(fields[b"session_id"].decode(), order_id)
        assert await client.hget(order, "status") == b"paid", ("sold, not paid", order_id)
    stock: dict[bytes, bytes] = await client.hgetall(keys.stock)  # type: ignore[assignment]
    on_hand = {item.decode(): int(units) for item, units in stock.items()}
    check_stock_conserved(run, on_hand)
    return answered, len(unanswered)


async def run_schedules(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis, seeds: range, **settings: Any
) -> dict[str, int]:
    totals = dict.fromkeys(("paid", "sold after a 503", "503", "declined", "expired"), 0)
    for seed in seeds:
        run = Run(random.Random(seed))
        options = {"cart_max_quantity": MAX_QUANTITY, "cart_max_lines": MAX_LINES, **settings}
        stores = stores_for(cluster_settings(cluster, **options), client)
        try:
            paid, sold_after_503 = await run_schedule(stores, client, run)
        except AssertionError as error:
            trace = "\n  ".join(run.trace[-60:])
            raise AssertionError(f"schedule seed {seed} failed: {error}\n  {trace}") from error
        totals["paid"] += paid
        totals["sold after a 503"] += sold_after_503
        totals["503"] += run.unknown_outcomes
        totals["declined"] += sum(line.endswith(": 402") for line in run.trace)
        totals["expired"] += sum("expired by the reaper" in line for line in run.trace)
    return totals


async def test_stock_and_caps_hold_under_random_interleavings_in_cluster_mode(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    totals = await run_schedules(stores_for, cluster, client, range(1, SCHEDULES + 1))
    print(f"{cluster.version}: {totals}")  # noqa: T201  (pytest -rP shows it)
    # The schedules did exercise what they are about.
    paid, declined, expired = totals["paid"], totals["declined"], totals["expired"]
    assert paid > SCHEDULES // 4 and declined > 0 and expired > 0, totals


async def test_every_sale_is_answered_200_or_503_while_the_stock_replica_is_cut_off(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    """The `{stock}` master's replica cut off: every step C is short of its WAIT, so a
    checkout is answered 503 with its units sold, and the reaper finishes it as paid. The
    schedules' invariants hold with those sales counted: each sold once, paid, after an
    approved charge, at most one per 503, and stock conserved."""
    keys = ClusterKeys()
    master = node_of(cluster, keys.stock)
    replica = replica_of(cluster, master)
    await asyncio.to_thread(break_replication, master, replica)
    try:
        totals = await run_schedules(
            stores_for, cluster, client, range(1, CUT_OFF_SCHEDULES + 1), redis_wait_timeout_ms=20
        )
    finally:
        await asyncio.to_thread(restore_replication, cluster, replica)
    print(f"{cluster.version}: {totals}")  # noqa: T201  (pytest -rP shows it)
    assert totals["sold after a 503"] > 0, totals


# --- unavailability --------------------------------------------------------------------------


async def test_an_unreachable_cluster_is_a_503() -> None:
    settings = make_settings(
        "redis://ignored:6379/0",
        redis_cluster_nodes="127.0.0.1:1",
        redis_connect_timeout=0.2,
        redis_retries=0,
    )
    stores = Stores.from_settings(settings)
    try:
        with pytest.raises(CartError) as raised:
            await stores.carts.get("s")
        assert isinstance(raised.value, StoreUnavailable)  # 503
    finally:
        await stores.aclose()


def test_every_session_bucket_is_a_slot_of_its_own_tag() -> None:
    keys = ClusterKeys()
    slots = {key_slot(keys.bucket_pending(bucket).encode()) for bucket in range(SESSION_BUCKETS)}
    assert len(slots) > SESSION_BUCKETS * 0.9  # spread over the slots, hence the masters
    session = "abc"
    tagged = {
        key_slot(key.encode())
        for key in (
            keys.cart(session),
            keys.idempotency(session, "k"),
            keys.declines(session),
            keys.session_order(session, "o"),
            keys.session_pending(session),
        )
    }
    assert len(tagged) == 1


# --- both services, as processes, on the cluster -----------------------------------------------


async def test_the_shop_flow_over_http_with_both_services_on_the_cluster(
    cluster: ClusterDeployment,
) -> None:
    prefix = f"h{secrets.token_hex(3)}:"
    environment = {
        "REDIS_CLUSTER_NODES": cluster.seeds,
        "REDIS_PASSWORD": cluster.password,
        "REDIS_KEY_PREFIX": prefix,
    }
    with running_stack("redis://ignored:6379/0", **environment) as stack:
        async with httpx.AsyncClient(timeout=30) as http:
            shop = Shop(stack, http)
            await shop.put_item("mug", stock=5, price_cents=1299)
            auth = await shop.new_session()
            assert (await shop.add(auth, "mug", 2)).status_code == 201
            assert (await shop.add(auth, "badger-plush")).status_code == 201  # the seeded catalog
            assert (await shop.add(auth, "nothing-such")).status_code == 404
            paid = await shop.pay(auth, key="k-1")
            assert paid.status_code == 200, paid.text
            order = paid.json()["order"]
            assert (await shop.pay(auth, key="k-1")).json() == paid.json()
            fetched = await http.get(f"{shop.checkout}/orders/{order['id']}", headers=auth)
            assert fetched.json() == order
            assert (await http.get(f"{shop.inventory}/items/mug")).json()["stock"] == 3
            assert (await shop.cart(auth)).json()["items"] == []


# --- a master killed during traffic (last: it leaves the cluster healed, roles swapped) --------


async def test_killing_the_stock_master_during_checkouts_loses_no_acknowledged_order(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    stores = stores_for(cluster_settings(cluster, checkout_timeout_seconds=5), client)
    keys = keys_of(stores)
    await put(stores, "mug", 100_000)
    acknowledged: dict[str, str] = {}  # order id -> session
    answers: dict[int, int] = {}
    after_restart = 0
    phase = {"restarted": False, "stop": False}

    async def shopper(name: str) -> None:
        nonlocal after_restart
        attempt = 0
        while not phase["stop"]:
            attempt += 1
            session, key, units = f"{name}-{attempt}", f"{name}-key-{attempt}", 1 + attempt % 3
            try:
                await stores.carts.add(session, "mug", units)
            except CartError as error:
                assert isinstance(error, StoreUnavailable), error  # 503
                await asyncio.sleep(0.05)
                continue
            response = await checkout_until_answered(stores, session, key, answers, pause=0.1)
            if response is not None and response.status_code == 200:
                acknowledged[orjson.loads(response.body)["order"]["id"]] = session
                after_restart += phase["restarted"]

    workers = [asyncio.create_task(shopper(f"w{n}")) for n in range(8)]
    await asyncio.sleep(1.0)
    owner_port = int(client.get_node_from_key(keys.stock).port)  # type: ignore[attr-defined]
    owner = next(node for node in cluster.nodes if node.port == owner_port)
    await asyncio.to_thread(owner.kill)
    await asyncio.to_thread(cluster.wait_until_ok, masters=3, replicated=False)
    await asyncio.sleep(1.0)
    await asyncio.to_thread(owner.start)
    await asyncio.to_thread(cluster.wait_until_ok, masters=3)
    phase["restarted"] = True
    await asyncio.sleep(1.5)
    phase["stop"] = True
    await asyncio.gather(*workers)

    assert owner.role() == "slave", "the killed master rejoined as a replica"
    assert after_restart > 0, answers  # checkouts succeed again once it is back
    await stores.orders.release_expired(now_ms=FAR_FUTURE_MS)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(keys.orders_stream)  # type: ignore[assignment]
    ledger = {
        fields[b"order_id"].decode(): sum(
            line["quantity"] for line in orjson.loads(fields[b"items"])
        )
        for _, fields in entries
    }
    assert len(ledger) == len(entries), "an order sold twice"
    lost = set(acknowledged) - set(ledger)
    assert not lost, f"acknowledged orders lost: {len(lost)} of {len(acknowledged)}"
    for order_id, session in acknowledged.items():
        order = orjson.loads(await stores.orders.get_json(session, order_id))
        assert order["status"] == "paid", order
    on_hand, reserved = await stock_state(client, keys, "mug")
    assert (reserved, on_hand + sum(ledger.values())) == (0, 100_000), (on_hand, ledger)
    print(f"{cluster.version}: answers {answers}, acknowledged {len(acknowledged)}")  # noqa: T201


# --- slots migrated while carts and checkouts use them -----------------------------------------


def migrate_slot(cluster: ClusterDeployment, slot: int, source_port: int, target_port: int) -> int:
    """Move `slot` between masters as `redis-cli --cluster reshard` does (SETSLOT
    IMPORTING/MIGRATING, MIGRATE 50 keys at a time, SETSLOT NODE), slowly, so that traffic
    meets the slot half-moved (ASK, TRYAGAIN). Returns the keys moved."""
    masters = cluster.masters()
    # Any: redis-py's execute_command is untyped.
    source: Any = next(node for node in masters if node.port == source_port).client()
    destination: Any = next(node for node in masters if node.port == target_port).client()
    moved = 0
    try:
        source_id = source.execute_command("CLUSTER MYID").decode()
        target_id = destination.execute_command("CLUSTER MYID").decode()
        destination.execute_command("CLUSTER SETSLOT", slot, "IMPORTING", source_id)
        source.execute_command("CLUSTER SETSLOT", slot, "MIGRATING", target_id)
        while keys := source.execute_command("CLUSTER GETKEYSINSLOT", slot, 50):
            source.execute_command(
                "MIGRATE", "127.0.0.1", target_port, "", 0, 5000,
                "AUTH", cluster.password, "KEYS", *keys,
            )  # fmt: skip
            moved += len(keys)
            time.sleep(0.02)
        for node in masters:
            node_client: Any = node.client()
            try:
                node_client.execute_command("CLUSTER SETSLOT", slot, "NODE", target_id)
            finally:
                node_client.close()
    finally:
        source.close()
        destination.close()
    return moved


async def test_migrating_the_stock_slot_and_a_carts_slot_during_traffic_fails_nothing(
    stores_for: StoresFor, cluster: ClusterDeployment, client: Redis
) -> None:
    stores = stores_for(cluster_settings(cluster), client)
    keys = keys_of(stores)
    await put(stores, "mug", 100_000)
    carts_slot = key_slot(keys.cart("w0-1").encode())
    stock_slot = key_slot(keys.stock.encode())
    acknowledged: dict[str, str] = {}
    answers: dict[int, int] = {}
    stop = False

    async def shopper(name: str) -> None:
        attempt = 0
        while not stop:
            attempt += 1
            session, key = f"{name}-{attempt % 5}", f"{name}-key-{attempt}"
            try:
                # Carts of five sessions per shopper, "w0-1" among them, live across the move.
                await stores.carts.add(session, "mug", 2)
                await stores.carts.add(session, "mug", 1)
            except CartError as error:
                assert isinstance(error, StoreUnavailable), error  # 503
                answers[503] = answers.get(503, 0) + 1
                continue
            response = await checkout_until_answered(stores, session, key, answers, pause=0.05)
            if response is not None and response.status_code == 200:
                acknowledged[orjson.loads(response.body)["order"]["id"]] = session

    workers = [asyncio.create_task(shopper(f"w{n}")) for n in range(6)]
    await asyncio.sleep(0.5)
    moved = 0
    for slot in (stock_slot, carts_slot):
        owner_port = int(
            client.get_node_from_key(  # type: ignore[attr-defined]
                keys.stock if slot == stock_slot else keys.cart("w0-1")
            ).port
        )
        target_port = next(node.port for node in cluster.masters() if node.port != owner_port)
        moved += await asyncio.to_thread(migrate_slot, cluster, slot, owner_port, target_port)
        await asyncio.sleep(0.5)
    stop = True
    await asyncio.gather(*workers)

    assert moved > 0
    await stores.orders.release_expired(now_ms=FAR_FUTURE_MS)
    entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(keys.orders_stream)  # type: ignore[assignment]
    ledger = {
        fields[b"order_id"].decode(): sum(
            line["quantity"] for line in orjson.loads(fields[b"items"])
        )
        for _, fields in entries
    }
    assert len(ledger) == len(entries), "an order sold twice"
    assert not set(acknowledged) - set(ledger), "acknowledged orders lost"
    for order_id, session in acknowledged.items():
        assert orjson.loads(await stores.orders.get_json(session, order_id))["status"] == "paid"
    on_hand, reserved = await stock_state(client, keys, "mug")
    assert (reserved, on_hand + sum(ledger.values())) == (0, 100_000)
    print(f"{cluster.version}: moved {moved} keys, answers {answers}")  # noqa: T201
