"""Redis Sentinel: both services follow a failover by themselves, leave a demoted master that
stays up, and a paid order that a client was told about survives a failover (WAIT); the
chart's planned hand-over (charts/storefront/files/redis/handover.sh, run as it is) loses no
acknowledged write; `min-replicas-to-write` bounds what a master without replicas takes.

One Sentinel deployment (tests/reliability/_sentinel.py) and one pair of service processes
serve the whole module; the failover tests run last, in this order: the hand-over script
giving up on a frozen replica, the replicas frozen under each `min-replicas-to-write`
setting, four hand-overs (the script, or a bare `SENTINEL FAILOVER`; the old master stays
up), then one stops the master, and the last brings it back as a replica and kills the
master that replaced it.
Figures are printed (`pytest -rP`), never asserted on: a slow machine must not fail a test,
a 500, a hang or a lost order must.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import httpx
import pytest
import redis
from prometheus_client import REGISTRY
from redis.asyncio.connection import AbstractConnection
from redis.asyncio.sentinel import SentinelManagedConnection

from cartlib.store import metrics
from cartlib.store.errors import NotReplicated, StoreUnavailable
from cartlib.store.keys import Keys
from cartlib.store.orders import PaymentResult
from cartlib.store.redis import (
    MASTER_CHECK_INTERVAL,
    BlockingSentinelConnectionPool,
    call,
    create_redis,
)
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn
from tests._redis import LOOPBACK
from tests.cartlib.conftest import make_settings
from tests.reliability._faults import Recorder, report
from tests.reliability._sentinel import (
    MASTER_NAME,
    Node,
    SentinelDeployment,
    running_sentinel_deployment,
)
from tests.services._stack import Stack, running_stack
from tests.services.conftest import Shop

CLIENT_TIMEOUT = 5.0  # well above the services' Redis timeouts (1 s): a hang hits it
RECOVERY_TIMEOUT = 30.0
KEYS = Keys("sf:")
NOT_REPLICATED = {"detail": NotReplicated.detail}
UNITS_PER_CART = 50
# A buyer's retries of its checkout once the traffic has stopped (each after a 503 waits
# 0.05 s): the new master answers by then, so one is usually enough.
RETRIES_AFTER_THE_END = 40


@pytest.fixture(scope="module")
def deployment() -> Iterator[SentinelDeployment]:
    with running_sentinel_deployment() as deployment:
        yield deployment


@pytest.fixture(scope="module")
def sentinel_stack(deployment: SentinelDeployment) -> Iterator[Stack]:
    """Both services, configured with the sentinels only (REDIS_URL points nowhere)."""
    with running_stack("redis://127.0.0.1:1/0", **deployment.service_env()) as stack:
        yield stack


@pytest.fixture
async def shop(sentinel_stack: Stack) -> AsyncIterator[Shop]:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as client:
        yield Shop(sentinel_stack, client)


def sentinel_settings(deployment: SentinelDeployment, **overrides: Any) -> Any:
    env = deployment.service_env()
    return make_settings(
        "redis://127.0.0.1:1/0",
        redis_sentinels=env["REDIS_SENTINELS"],
        redis_password=deployment.password,
        redis_sentinel_password=deployment.sentinel_password,
        **overrides,
    )


async def new_session(shop: Shop) -> tuple[str, dict[str, str]]:
    response = await shop.client.post(f"{shop.inventory}/sessions")
    assert response.status_code == 201, response.text
    body = response.json()
    return body["session_id"], {"Authorization": f"Bearer {body['token']}"}


# --- cartlib against the sentinels ------------------------------------------------------


async def test_a_replicated_checkout_costs_two_round_trips(
    deployment: SentinelDeployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """complete_checkout and WAIT go in one round trip: a checkout still costs two."""
    stores = Stores.from_settings(sentinel_settings(deployment))
    sends = 0
    original = SentinelManagedConnection.send_packed_command

    async def counted(self: AbstractConnection, *args: Any, **kwargs: Any) -> None:
        nonlocal sends
        sends += 1
        await original(self, *args, **kwargs)

    try:
        await stores.catalog.put("rt-mug", ItemIn(name="Mug", price_cents=250, stock=100))
        await stores.carts.add("rt-session-0", "rt-mug", 1)
        await stores.carts.add("rt-session-1", "rt-mug", 1)
        # The first checkout connects and loads scripts; count the second.
        await stores.orders.checkout("rt-session-0", payment_token="tok_visa", processor=_visa)
        monkeypatch.setattr(SentinelManagedConnection, "send_packed_command", counted)
        response = await stores.orders.checkout(
            "rt-session-1", payment_token="tok_visa", processor=_visa, idempotency_key="k"
        )
    finally:
        await stores.aclose()
    assert response.status_code == 200, response.body
    report("round trips of one paid checkout with WAIT", {"round trips": sends})
    assert sends == 2


class _VisaProcessor:
    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        return PaymentResult(approved=True)


_visa = _VisaProcessor()


async def test_the_sentinel_pool_waits_for_a_free_connection(
    deployment: SentinelDeployment,
) -> None:
    """Like the standalone pool: a request waits up to REDIS_POOL_TIMEOUT for a connection
    (redis-py's plain Sentinel pool would fail at once), then gets 503."""
    redis = create_redis(
        sentinel_settings(deployment, redis_max_connections=1, redis_pool_timeout=0.3)
    )
    pool = redis.connection_pool
    assert isinstance(pool, BlockingSentinelConnectionPool)
    try:
        held = await pool.get_connection()
        with pytest.raises(StoreUnavailable):
            await call("PING", redis.ping())
        waiting = asyncio.create_task(call("PING", redis.ping()))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        await pool.release(held)
        assert await waiting is True
        # The pool gauges read this pool (create_redis watches the newest pool).
        metrics.refresh_pool_gauges()
        assert REGISTRY.get_sample_value("cartlib_redis_pool_max_connections") == 1
        assert REGISTRY.get_sample_value("cartlib_redis_pool_connections", {"state": "idle"}) == 1
        assert REGISTRY.get_sample_value("cartlib_redis_pool_connections", {"state": "in_use"}) == 0
    finally:
        await redis.aclose()


async def test_redis_password_overrides_the_url_and_may_repeat_it(
    deployment: SentinelDeployment,
) -> None:
    """Standalone: REDIS_PASSWORD wins over a password in REDIS_URL, and the chart's setting of
    both to the same value works."""
    master = deployment.current_master()
    url = f"redis://{LOOPBACK}:{master.port}/0"
    with_password = f"redis://:{deployment.password}@{LOOPBACK}:{master.port}/0"
    stale_password = f"redis://:not-the-password@{LOOPBACK}:{master.port}/0"
    for redis_url, redis_password in (
        (url, deployment.password),
        (with_password, deployment.password),
        (stale_password, deployment.password),
        (with_password, None),
    ):
        redis = create_redis(make_settings(redis_url, redis_password=redis_password))
        try:
            assert await call("PING", redis.ping()) is True
        finally:
            await redis.aclose()
    wrong = create_redis(make_settings(with_password, redis_password="not-the-password"))
    try:
        with pytest.raises(StoreUnavailable):  # an auth error is 503, not 500
            await call("PING", wrong.ping())
    finally:
        await wrong.aclose()


# --- the services over HTTP -------------------------------------------------------------


async def test_too_few_replicas_give_503_and_a_retry_rechecks_them(
    deployment: SentinelDeployment, shop: Shop
) -> None:
    """With every replica paused, WAIT times out: the checkout answers 503, not 200, and so
    does a retry with its Idempotency-Key (not a replay of success), until a replica has the
    order: then the retry gets the 200 of that same order."""
    await shop.put_item("wait-mug", stock=100, price_cents=250)
    session_id, auth = await new_session(shop)
    assert (await shop.add(auth, "wait-mug", 2)).status_code == 201
    key = uuid.uuid4().hex
    for replica in deployment.replicas:
        replica.pause()
    try:
        first = await shop.pay(auth, key=key)
        retry = await shop.pay(auth, key=key)
    finally:
        for replica in deployment.replicas:
            replica.unpause()
    for response in (first, retry):
        assert response.status_code == 503, response.text
        assert response.json() == NOT_REPLICATED
        assert response.headers["retry-after"].isdigit()

    deployment.wait_until_healthy()
    confirmed = await shop.pay(auth, key=key)
    assert confirmed.status_code == 200, confirmed.text
    order = confirmed.json()["order"]
    assert (order["status"], order["total_cents"]) == ("paid", 500)
    # Paid on the master and on every replica, once.
    for server in deployment.servers:
        client = server.client()
        try:
            assert client.hget(KEYS.order(order["id"]), "status") == b"paid", server.name
            assert client.hget(KEYS.order(order["id"]), "session_id") == session_id.encode()
        finally:
            client.close()
    metrics = (await shop.client.get(f"{shop.checkout}/metrics")).text
    assert 'cartlib_wait_shortfalls_total{step="checkout"} 1.0' in metrics
    assert 'cartlib_wait_shortfalls_total{step="replay"} 1.0' in metrics


# --- failovers under traffic (last: they leave the old master stopped) ------------------


@dataclass
class Traffic(Recorder):
    """Shoppers' requests (named "add" or "checkout") and what they were told."""

    # session id -> units whose add got 201
    acknowledged_units: Counter[str] = field(default_factory=Counter)
    paid_orders: list[str] = field(default_factory=list)
    # what the failures other than 503 said, to show in an assertion message
    unexpected: list[str] = field(default_factory=list)
    # checkouts paid after a 503 and a retry with the same Idempotency-Key
    retried_checkouts: int = 0
    # checkouts whose retries never got an answer other than 503 (must stay 0)
    unfinished_checkouts: int = 0
    running: bool = True

    async def send(
        self, name: str, request: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response | None:
        response = await super().send(name, request)
        if response is None:
            return None
        if response.status_code >= 400 and response.status_code != 503:
            self.unexpected.append(f"{name} {response.status_code} {response.text}")
        if response.status_code == 503:
            await asyncio.sleep(0.05)  # as a client honouring Retry-After would, briefly
        return response

    def recovered_after(self, kind: str, since: float, down: float) -> float | None:
        """Seconds from `since` (the outage began) to the end of the first success of `kind`
        that started after both `down` (the master was gone for sure) and the last failure of
        `kind`; None while there is none."""
        last_failure = max((answer.started for answer in self.failures(kind)), default=down)
        successes = [
            answer.ended
            for answer in self.answers
            if answer.name == kind and answer.ok
            if answer.started > max(last_failure, down)
        ]
        return min(successes) - since if successes else None


async def cart_filler(shop: Shop, traffic: Traffic, item: str) -> None:
    """Adds one unit at a time to carts it never checks out, a new cart well below the
    99-unit line cap (CART_MAX_QUANTITY)."""
    while traffic.running:
        session_id, auth = await new_session(shop)
        while traffic.running and traffic.acknowledged_units[session_id] < UNITS_PER_CART:
            response = await traffic.send("add", partial(shop.add, auth, item))
            if response is not None and response.status_code == 201:
                traffic.acknowledged_units[session_id] += 1


async def buyer(shop: Shop, traffic: Traffic, item: str) -> None:
    """Fills a new cart and pays for it, retrying a 503 with the same Idempotency-Key."""
    while traffic.running:
        _, auth = await new_session(shop)
        added = None
        while traffic.running and (added is None or added.status_code != 201):
            added = await traffic.send("add", partial(shop.add, auth, item))
        if not traffic.running:
            break
        key = uuid.uuid4().hex
        paid = None
        attempts = after_the_end = 0
        # A checkout once started is retried until it ends, even after the traffic stops.
        while paid is None or paid.status_code == 503:
            if not traffic.running:
                if after_the_end == RETRIES_AFTER_THE_END:
                    traffic.unfinished_checkouts += 1
                    break
                after_the_end += 1
            paid = await traffic.send("checkout", partial(shop.pay, auth, key=key))
            attempts += 1
        if paid is not None and paid.status_code == 200:
            traffic.paid_orders.append(paid.json()["order"]["id"])
            traffic.retried_checkouts += int(attempts > 1)


# --- the hand-over script's way out --------------------------------------------------


async def test_the_hand_over_gives_up_and_resumes_writes_when_a_replica_does_not_answer(
    deployment: SentinelDeployment,
) -> None:
    """A replica frozen (`docker pause`: its port still accepts connections, nothing answers)
    cannot be confirmed caught up, yet a Sentinel might promote it: the script unpauses and
    exits 1 with no hand-over, within its per-call bound (redis-cli has no timeout of its
    own: it used to wait for the grace period with writes paused). The master stays master
    and takes writes at once."""
    deployment.wait_until_healthy()
    master = deployment.current_master()
    frozen = next(node for node in deployment.servers if node is not master)
    await asyncio.to_thread(frozen.pause)
    try:
        started = time.monotonic()
        # Below the test sentinels' 1 s down-after, as the chart's 1 s is below its 10 s.
        status, log = await asyncio.to_thread(
            deployment.hand_over, HANDOVER_CALL_TIMEOUT_SECONDS="0.3"
        )
        took = time.monotonic() - started
        client = master.client(socket_timeout=2)
        try:
            written = client.set("handover-gave-up", "1")  # a paused master would time out
            role_now = client.role()[0]
        finally:
            client.close()
    finally:
        await asyncio.to_thread(frozen.unpause)
    report(
        "hand-over script with a frozen replica",
        {"exit status": status, "took (s, with the container's start)": _seconds(took)},
    )
    assert status == 1, log
    assert f"{LOOPBACK}:{frozen.port} does not answer" in log, log
    assert "writes resumed on this master" in log, log
    assert written is True
    assert role_now == b"master"
    assert deployment.master_address() == (LOOPBACK, master.port)
    deployment.wait_until_healthy()


# --- min-replicas-to-write: what a master whose replicas are gone acknowledges ---------

# The chart's redis.sentinel.minReplicasToWrite and minReplicasMaxLag.
CHART_MIN_REPLICAS = (1, 5)
FREEZE_MARGIN = 3.0  # seconds the replicas stay frozen beyond min-replicas-max-lag
THAW_TIMEOUT = 15.0


def set_min_replicas(deployment: SentinelDeployment, to_write: int, max_lag: int) -> None:
    """`min-replicas-to-write` and `min-replicas-max-lag` on every server (any may be promoted),
    as the chart's redis.conf sets them."""
    for server in deployment.servers:
        client = server.client()
        try:
            client.config_set("min-replicas-to-write", to_write)
            client.config_set("min-replicas-max-lag", max_lag)
        finally:
            client.close()


@pytest.mark.parametrize(
    ("to_write", "max_lag"),
    [(0, 10), (1, 10), (1, 5), (1, 2)],
    ids=["off", "1-replica-lag-10s", "1-replica-lag-5s", "1-replica-lag-2s"],
)
async def test_min_replicas_to_write_bounds_what_a_master_alone_acknowledges(
    deployment: SentinelDeployment, shop: Shop, to_write: int, max_lag: int
) -> None:
    """Both replicas frozen (`docker pause`: their connections stay up, their acknowledgements
    stop, as in a network partition or a replica host's stall) while 4 clients add to carts,
    for `max_lag` + FREEZE_MARGIN s. What the master acknowledges meanwhile no replica has:
    a failover then (the master lost, or partitioned and replaced) loses it. Without
    `min-replicas-to-write` the master acknowledges every add for as long as that lasts; with
    it, it refuses writes (NOREPLICAS) once no replica has acknowledged for more than
    `min-replicas-max-lag` seconds, and the services answer 503 until a replica is back.
    Printed: the units acknowledged with no replica to have them, how long the master took
    them, the 503s while the replicas were up (spurious refusals) and while frozen."""
    deployment.wait_until_healthy()
    item = f"min-replicas-mug-{to_write}-{max_lag}"
    await shop.put_item(item, stock=10_000_000, price_cents=250)
    set_min_replicas(deployment, to_write, max_lag)
    traffic = Traffic()
    fillers = [asyncio.create_task(cart_filler(shop, traffic, item)) for _ in range(4)]
    frozen_at = thawed_at = time.monotonic()
    try:
        await asyncio.sleep(2.0)  # steady traffic first, every replica up
        frozen_at = time.monotonic()
        for replica in deployment.replicas:
            await asyncio.to_thread(replica.pause)
        try:
            await asyncio.sleep(max_lag + FREEZE_MARGIN)
        finally:
            thawed_at = time.monotonic()
            for replica in deployment.replicas:
                await asyncio.to_thread(replica.unpause)
        while time.monotonic() - thawed_at < THAW_TIMEOUT:
            await asyncio.sleep(0.2)
            if traffic.recovered_after("add", thawed_at, thawed_at) is not None:
                await asyncio.sleep(0.5)
                break
    finally:
        traffic.running = False
        await asyncio.gather(*fillers)
        set_min_replicas(deployment, 0, 10)

    adds = [answer for answer in traffic.answers if answer.name == "add"]
    steady = [answer for answer in adds if answer.started < frozen_at]
    frozen = [answer for answer in adds if frozen_at <= answer.started and answer.ended < thawed_at]
    exposed = [answer for answer in frozen if answer.status == 201]
    refused = [answer for answer in frozen if answer.status == 503]
    failed = traffic.failures()
    by_status = Counter("no answer" if a.status is None else a.status for a in failed)
    recovered = traffic.recovered_after("add", thawed_at, thawed_at)
    _, lost, _ = read_back(deployment.current_master(), traffic, item)
    report(
        f"replicas frozen for {max_lag + FREEZE_MARGIN:.0f} s under 4 clients adding to carts: "
        f"min-replicas-to-write {to_write}, min-replicas-max-lag {max_lag}",
        {
            "adds with every replica up: sent / 503": f"{len(steady)} / "
            f"{sum(1 for a in steady if a.status == 503)}",
            "adds while frozen: sent / acknowledged / 503": f"{len(frozen)} / {len(exposed)} / "
            f"{len(refused)}",
            "units acknowledged with no replica to have them": len(exposed),
            "the master acknowledged them for (s) after the freeze": _seconds(
                max((a.started for a in exposed), default=frozen_at) - frozen_at
            ),
            "first 503 after the freeze (s)": _seconds(
                min((a.started for a in refused), default=frozen_at) - frozen_at
                if refused
                else None
            ),
            "adds succeed again after the thaw (s)": _seconds(recovered),
            "failed by status": dict(by_status) or "none",
            "acknowledged units lost (read back once the replicas are back)": lost,
        },
    )
    assert not traffic.unexpected, (dict(by_status), traffic.unexpected)
    assert set(by_status) <= {503}, dict(by_status)
    assert recovered is not None, f"adds did not succeed again {THAW_TIMEOUT} s after the thaw"
    assert lost == 0
    if to_write == 0:
        assert not refused, "without min-replicas-to-write a master alone still writes"
    else:
        assert refused, "the master kept acknowledging writes with no replica"
    for service in (shop.stack.inventory, shop.stack.checkout):
        assert "Traceback" not in service.log.read_text(), service.log


# --- a hand-over: the demoted master stays up ------------------------------------------

# After the sentinels name the new master, a service may keep its connections to the old one
# until its pool next asks them (MASTER_CHECK_INTERVAL); this margin covers the requests
# already running then and a slow event loop. From then on nothing may go to the old master.
HANDOVER_MARGIN = 1.0
DEMOTION_TIMEOUT = 25.0  # Sentinel makes the old master a replica about 10 s after the switch


@dataclass(frozen=True, slots=True)
class ReadYourWrite:
    session_id: str
    started: float  # when the add was sent
    stale: bool  # checkout's GET /cart lacked the unit inventory had just acknowledged


async def read_your_writes(
    shop: Shop, traffic: Traffic, item: str, checks: list[ReadYourWrite]
) -> None:
    """Adds a unit through inventory to a new cart, then reads the cart through checkout."""
    while traffic.running:
        session_id, auth = await new_session(shop)
        started = time.monotonic()
        added = await traffic.send("add", partial(shop.add, auth, item))
        if added is None or added.status_code != 201:
            continue
        traffic.acknowledged_units[session_id] += 1
        read = await traffic.send("read", partial(shop.cart, auth))
        if read is None or read.status_code != 200:
            continue
        units = sum(line["quantity"] for line in read.json()["items"] if line["id"] == item)
        checks.append(ReadYourWrite(session_id, started, stale=units != 1))


def sentinel_views(deployment: SentinelDeployment) -> set[int | None]:
    """The master port each sentinel gives clients (GET-MASTER-ADDR-BY-NAME); None: no answer."""
    ports: set[int | None] = set()
    for sentinel in deployment.sentinels:
        client = sentinel.client(socket_timeout=1, socket_connect_timeout=1)
        try:
            address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            ports.add(int(address[1]) if address else None)
        except redis.RedisError:
            ports.add(None)
        finally:
            client.close()
    return ports


def service_connections(node: Node) -> int:
    """The services' connections to `node` (CLIENT LIST entries named `storefront`)."""
    client = node.client()
    try:
        return sum(1 for entry in client.client_list() if entry.get("name") == "storefront")
    finally:
        client.close()


def role(node: Node) -> str:
    client = node.client()
    try:
        reply: Any = client.role()
        return str(reply[0].decode())
    finally:
        client.close()


@pytest.mark.parametrize(
    ("demoted_by", "min_replicas"),
    [
        ("preStop", CHART_MIN_REPLICAS),
        ("preStop", None),
        ("Sentinel", None),
        ("Sentinel", CHART_MIN_REPLICAS),
    ],
    ids=["preStop", "preStop-no-min-replicas", "Sentinel", "Sentinel-min-replicas"],
)
async def test_a_demoted_master_that_stays_up_gets_no_more_traffic(
    deployment: SentinelDeployment,
    shop: Shop,
    demoted_by: str,
    min_replicas: tuple[int, int] | None,
) -> None:
    """A hand-over while shoppers add to carts and read them back; the old master stays up
    and becomes a replica of the promoted one.

    preStop: the chart's hand-over script (charts/storefront/files/redis/handover.sh, the very
    file the Redis preStop runs) pauses writes on the master, waits until the replicas have
    its offset, runs `SENTINEL FAILOVER` and makes the old master a replica of the promoted
    one before it unpauses: no acknowledged unit is lost across the whole hand-over, and what
    it costs the clients (failed requests, the longest request) is measured. Before the
    script, the preStop ran `SENTINEL FAILOVER` and `REPLICAOF` once the sentinels named the
    new master, and the old master acknowledged units in between that were lost (82 of 389
    in the run before the fix; 248 of 1,067 and 439 of 1,060 in the issue).

    Sentinel: a bare `SENTINEL FAILOVER` (an operator's by hand, or what a healed partition
    looks like); Sentinel makes the old master a replica about 10 s later (until then it is a
    second master, and Sentinel's CLIENT KILL ends it). The units the old master acknowledged
    before the services left it are lost (printed): Sentinel does not wait for a replica to
    catch up, which is why the chart hands over with the script. With the chart's
    `min-replicas-to-write` the old master refuses writes once its replicas have left it, but
    the replica Sentinel moves to the new master has taken the old master's last writes by then,
    so it needs a full resynchronisation, and until it has one the new master refuses writes
    too (503s after the switch, allowed in that case only).

    Each runs with the chart's `min-replicas-to-write`/`min-replicas-max-lag` and without.

    In both, once the services' pools have asked the sentinels again (at most
    MASTER_CHECK_INTERVAL after they all name the new master, plus HANDOVER_MARGIN), no
    request goes to the old master: its CLIENT LIST shows no service connection while it is
    still up, every request succeeds, a cart read through checkout has the unit inventory has
    just acknowledged, and no acknowledged unit is lost. Before that fix the services stayed
    on the old master: READONLY retries went back to it (503s), reads were answered by it as
    a replica (stale), and as a second master it acknowledged writes it dropped when it became
    a replica.
    """
    deployment.wait_until_healthy()
    item = f"handover-mug-{demoted_by.lower()}-{'min-replicas' if min_replicas else 'off'}"
    await shop.put_item(item, stock=10_000_000, price_cents=250)
    if min_replicas:
        set_min_replicas(deployment, *min_replicas)
    old_master = deployment.current_master()
    traffic = Traffic()
    checks: list[ReadYourWrite] = []
    shoppers = [
        asyncio.create_task(read_your_writes(shop, traffic, item, checks)) for _ in range(8)
    ]
    settle_time = MASTER_CHECK_INTERVAL + HANDOVER_MARGIN
    known_after = left_after = demoted_after = handover_took = None
    connections_then = role_then = None
    handover: asyncio.Task[tuple[int, str]] | None = None
    try:
        await asyncio.sleep(1.0)  # steady traffic first
        connections_before = await asyncio.to_thread(service_connections, old_master)
        started = time.monotonic()
        if demoted_by == "preStop":
            handover = asyncio.create_task(asyncio.to_thread(deployment.hand_over))
        else:
            sentinel = deployment.sentinels[0].client()
            try:
                await asyncio.to_thread(sentinel.sentinel_failover, MASTER_NAME)
            finally:
                sentinel.close()
        while time.monotonic() - started < DEMOTION_TIMEOUT:
            await asyncio.sleep(0.1)
            now = time.monotonic() - started
            if handover is not None and handover_took is None and handover.done():
                handover_took = now
            if known_after is None:
                views = await asyncio.to_thread(sentinel_views, deployment)
                if None not in views and old_master.port not in views:
                    known_after = now
                continue
            connections = await asyncio.to_thread(service_connections, old_master)
            if left_after is None and connections == 0:
                left_after = now
            if connections_then is None and now >= known_after + settle_time:
                connections_then, role_then = connections, await asyncio.to_thread(role, old_master)
            if demoted_after is None and await asyncio.to_thread(role, old_master) == "slave":
                demoted_after = now
            if None not in (demoted_after, connections_then, left_after):
                await asyncio.sleep(1.0)  # and traffic once the old master is a replica
                break
    finally:
        traffic.running = False
        await asyncio.gather(*shoppers)
        handover_status, handover_log = (await handover) if handover else (0, "")
        set_min_replicas(deployment, 0, 10)

    assert known_after is not None, "the sentinels did not name a new master"
    # Settled: the pools have asked the sentinels again and left the old master (on a loaded
    # machine that can take longer than MASTER_CHECK_INTERVAL + HANDOVER_MARGIN).
    settled = started + max(known_after + settle_time, left_after or 0.0)
    connections_after = await asyncio.to_thread(service_connections, old_master)
    new_master = deployment.current_master()
    late = [check for check in checks if check.started >= settled]
    late_sessions = {check.session_id for check in late}
    early_stale = sum(1 for check in checks if check.started < settled and check.stale)
    late_stale = sum(1 for check in late if check.stale)
    lost = units_lost(new_master, traffic, item, late_sessions)
    failed = traffic.failures()
    by_status = Counter("no answer" if a.status is None else a.status for a in failed)
    late_failures = [answer for answer in failed if answer.started >= settled]
    during = [a for a in traffic.answers if started <= a.started < settled]
    outage = traffic.outage()
    report(
        f"hand-over: the old master stays up (made a replica by {demoted_by}"
        f"{': the chart hand-over script' if handover else ', a bare SENTINEL FAILOVER'}); "
        f"min-replicas-to-write/max-lag {min_replicas or 'off'}; "
        "8 clients add through inventory and read the cart back through checkout",
        {
            "hand-over script ended after (s) / exit status": f"{_seconds(handover_took)} / "
            f"{handover_status}"
            if handover
            else "no script",
            "sentinels all name the new master after (s)": _seconds(known_after),
            "services' connections left the old master after (s)": _seconds(left_after),
            "old master became a replica after (s)": _seconds(demoted_after),
            f"service connections on the old master before / {settle_time:.0f} s after the "
            "switch (its role then) / at the end": f"{connections_before} / "
            f"{connections_then} ({role_then}) / {connections_after}",
            "requests sent": len(traffic.answers),
            "requests failed (after the switch + margin)": f"{len(failed)} ({len(late_failures)})",
            "failed by status": dict(by_status) or "none",
            "clients' pause: first failure to first success after the last (s)": _seconds(
                outage[1] - outage[0] if outage else 0.0
            ),
            "longest request from the command to the switch + margin (s)": _seconds(
                max((a.ended - a.started for a in during), default=0.0)
            ),
            "read-your-writes checks before / after": f"{len(checks) - len(late)} / {len(late)}",
            "stale reads before / after": f"{early_stale} / {late_stale}",
            "acknowledged units lost before / after": " / ".join(
                f"{missing} of {units}" for missing, units in (lost[False], lost[True])
            ),
        },
    )
    if handover:
        assert handover_status == 0, handover_log
        # The whole hand-over, not only after it settled: nothing acknowledged is lost.
        assert lost[False][0] == 0, f"units acknowledged during the hand-over were lost: {lost}"
    assert demoted_after is not None, "Sentinel did not make the old master a replica"
    assert new_master is not old_master
    assert not traffic.unexpected, (dict(by_status), traffic.unexpected)
    assert set(by_status) <= {503}, dict(by_status)
    # When they leave it depends on the machine's load (printed above); that they leave it
    # while it is still up, and never come back, does not.
    assert left_after is not None, "the services never left the replaced master"
    assert connections_after == 0, "the services use the demoted master"
    assert late, "no read-your-writes check ran after the switch"
    assert late_stale == 0, "checkout read a cart without the unit inventory acknowledged"
    assert lost[True][0] == 0, "units acknowledged after the switch were lost"
    if handover or not min_replicas:
        assert not late_failures, Counter(answer.status for answer in late_failures)
    for service in (shop.stack.inventory, shop.stack.checkout):
        log = service.log.read_text()
        assert "the sentinels name a new master" in log, service.log
        assert "Traceback" not in log, service.log


def units_lost(
    master: Node, traffic: Traffic, item: str, late_sessions: set[str]
) -> dict[bool, tuple[int, int]]:
    """(acknowledged units missing on `master`, acknowledged units), for the carts of
    `late_sessions` (True) and for the others (False)."""
    client = master.client()
    try:
        stored = {
            session_id: int(client.hget(KEYS.cart(session_id), item) or 0)
            for session_id in traffic.acknowledged_units
        }
    finally:
        client.close()
    lost: Counter[bool] = Counter()
    acknowledged: Counter[bool] = Counter()
    for session_id, units in traffic.acknowledged_units.items():
        late = session_id in late_sessions
        acknowledged[late] += units
        lost[late] += max(0, units - stored[session_id])
    return {late: (lost[late], acknowledged[late]) for late in (False, True)}


async def test_failover_under_traffic_loses_no_acknowledged_order(
    deployment: SentinelDeployment, shop: Shop
) -> None:
    """`docker stop` of the master while shoppers add to carts and pay: requests fail with
    fast 503s (never 500, never a hang) until the sentinels promote a replica, then succeed
    against it with no restart; every order a client got 200 for is paid on the new master.

    Every checkout retried with its Idempotency-Key after a 503 ends in 200, the one cut off
    by the stop after `begin_checkout` (and its charge) included: its retry finishes that
    order (a new checkout would find the cart empty: 400). Before resumable checkouts that
    retry got 409 "still in progress" until CHECKOUT_TIMEOUT_SECONDS released the order.
    """
    await failover_under_traffic(deployment, shop, "stop", item="stop-mug")


async def test_a_crashed_master_loses_no_acknowledged_order_either(
    deployment: SentinelDeployment, shop: Shop
) -> None:
    """The same with `docker kill` (SIGKILL: no shutdown, no last sync to the replicas) of the
    master the first failover promoted, once the stopped one is back as a replica: cart
    writes not yet replicated may be lost (and are counted), acknowledged orders may not."""
    for server in deployment.servers:
        if server.status() == "exited":
            server.start()
    deployment.wait_until_healthy()
    await failover_under_traffic(deployment, shop, "kill", item="kill-mug")


async def failover_under_traffic(
    deployment: SentinelDeployment, shop: Shop, outage: str, *, item: str
) -> None:
    await shop.put_item(item, stock=10_000_000, price_cents=250)
    old_master = deployment.current_master()
    traffic = Traffic()
    shoppers = [
        *(asyncio.create_task(cart_filler(shop, traffic, item)) for _ in range(4)),
        *(asyncio.create_task(buyer(shop, traffic, item)) for _ in range(4)),
    ]
    try:
        await asyncio.sleep(1.0)  # steady traffic first
        paid_before = len(traffic.paid_orders)
        stopped_at = time.monotonic()
        await asyncio.to_thread(old_master.stop if outage == "stop" else old_master.kill)
        down_at = time.monotonic()  # the container has exited
        promoted_after: float | None = None
        while time.monotonic() - stopped_at < RECOVERY_TIMEOUT:
            await asyncio.sleep(0.1)
            if promoted_after is None:
                address = await asyncio.to_thread(deployment.master_address)
                if address is not None and address[1] != old_master.port:
                    promoted_after = time.monotonic() - stopped_at
            recovered = [
                traffic.recovered_after(kind, stopped_at, down_at) for kind in ("add", "checkout")
            ]
            if promoted_after is not None and None not in recovered:
                await asyncio.sleep(1.0)  # and some traffic against the new master
                break
    finally:
        traffic.running = False
        await asyncio.gather(*shoppers)

    new_master = deployment.current_master()
    assert new_master is not old_master
    lost_orders, lost_units, extra_units = read_back(new_master, traffic, item)
    failed = traffic.failures()
    by_status = Counter("no answer" if a.status is None else a.status for a in failed)
    add_recovery = traffic.recovered_after("add", stopped_at, down_at)
    checkout_recovery = traffic.recovered_after("checkout", stopped_at, down_at)
    acknowledged = sum(traffic.acknowledged_units.values())
    report(
        f"failover: docker {outage} of the master under add-to-cart and checkout traffic",
        {
            "sentinels named the new master after (s)": _seconds(promoted_after),
            "adds succeed again after (s)": _seconds(add_recovery),
            "checkouts succeed again after (s)": _seconds(checkout_recovery),
            "requests sent": len(traffic.answers),
            "requests failed": len(failed),
            "failed by status": dict(by_status) or "none",
            "slowest failed request (s)": _seconds(
                max((a.ended - a.started for a in failed), default=0.0)
            ),
            "paid orders acknowledged (before the outage)": f"{len(traffic.paid_orders)} "
            f"({paid_before})",
            "acknowledged orders lost": lost_orders,
            "checkouts paid after a 503 (retried with the same key)": traffic.retried_checkouts,
            "cart units acknowledged": acknowledged,
            "cart units lost / extra on the new master": f"{lost_units} / {extra_units}",
        },
    )
    assert promoted_after is not None, "the sentinels did not promote a replica"
    assert add_recovery is not None, f"adds did not succeed again in {RECOVERY_TIMEOUT} s"
    assert checkout_recovery is not None, f"checkouts did not succeed in {RECOVERY_TIMEOUT} s"
    assert not traffic.unexpected, (dict(by_status), traffic.unexpected)
    assert set(by_status) <= {503}, dict(by_status)
    assert traffic.unfinished_checkouts == 0, "a checkout retried with its key never ended"
    assert lost_orders == 0
    assert len(traffic.paid_orders) > paid_before, "no order was paid after the failover"
    for service in (shop.stack.inventory, shop.stack.checkout):
        assert service.process.poll() is None, f"{service.name} exited"
        assert "Traceback" not in service.log.read_text(), service.log


def read_back(master: Any, traffic: Traffic, item: str) -> tuple[int, int, int]:
    """(acknowledged orders missing or not paid, acknowledged cart units missing, units
    present that no 201 acknowledged) on the new master."""
    client = master.client()
    try:
        statuses = [client.hget(KEYS.order(order_id), "status") for order_id in traffic.paid_orders]
        lost_orders = sum(1 for status in statuses if status != b"paid")
        lost_units = extra_units = 0
        for session_id, units in traffic.acknowledged_units.items():
            stored = int(client.hget(KEYS.cart(session_id), item) or 0)
            lost_units += max(0, units - stored)
            extra_units += max(0, stored - units)
    finally:
        client.close()
    return lost_orders, lost_units, extra_units


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f}"
