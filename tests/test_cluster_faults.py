"""Faults of a Redis Cluster (and a Valkey cluster) under shop traffic over HTTP: both
services as processes on a real 6-node cluster (3 masters, 3 replicas), shoppers adding to
carts and checking out with Idempotency-Keys, retrying a 503 as a client should.

* a resharding of live carts' slots with the operator's `redis-cli --cluster reshard`;
* the master of live sessions' slots killed (`docker kill`), failed over, then restarted:
  it rejoins as a replica of the replica promoted in its place;
* a checkout whose step A no replica holds when its master dies (cartlib in process).

Every answer must be a success or a retriable 503 with Retry-After (never a 500), no
acknowledged order lost, no unit of stock created or lost. The figures are printed
(`pytest -rP`) and recorded in docs/reliability.md. (tests/test_cluster_cartlib.py kills the
`{stock}` master and migrates slots with CLUSTER SETSLOT steps, in process.)
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import orjson
import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from cartlib.settings import Settings
from cartlib.store.auth import ALGORITHM
from cartlib.store.errors import StoreUnavailable
from cartlib.store.keys import ClusterKeys
from cartlib.store.orders import PaymentResult
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn
from tests._cluster import (
    ClusterDeployment,
    ClusterNode,
    break_replication,
    node_of,
    replica_of,
    running_cluster,
)
from tests._redis import LOOPBACK
from tests.cartlib.conftest import make_settings
from tests.cartlib.store.test_interleavings import FAR_FUTURE_MS
from tests.services._stack import TOKEN_SECRET, Stack, running_stack

pytestmark = pytest.mark.docker

STOCK = 1_000_000
SHOPPERS = 8
CHECKOUT_RETRIES = 100  # a client retrying its key, 0.1 s apart: bounded


@pytest.fixture(scope="module", params=["7", "valkey8"], ids=["redis7", "valkey8"])
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterDeployment]:
    with running_cluster(request.param) as deployment:
        yield deployment


def node_id(node: ClusterNode) -> str:
    client: Any = node.client()
    try:
        return str(client.execute_command("CLUSTER MYID").decode())
    finally:
        client.close()


def sessions_on(
    cluster: ClusterDeployment,
    keys: ClusterKeys,
    master: ClusterNode,
    count: int,
    label: str,
    slots: set[int] | None = None,
) -> list[str]:
    """`count` session ids whose slot `master` owns (and is in `slots`, if given)."""
    client: Any = cluster.client()
    found: list[str] = []
    try:
        for index in range(200_000):
            session = f"{label}-{index}"
            cart = keys.cart(session)
            if slots is not None and key_slot(cart.encode()) not in slots:
                continue
            if int(client.get_node_from_key(cart).port) == master.port:
                found.append(session)
                if len(found) == count:
                    return found
    finally:
        client.close()
    raise AssertionError(f"found {len(found)} sessions on {master.name}")


def bearer(session: str) -> dict[str, str]:
    now = int(time.time())
    token = jwt.encode(
        {"sub": session, "iat": now, "exp": now + 3600}, TOKEN_SECRET, algorithm=ALGORITHM
    )
    return {"Authorization": f"Bearer {token}"}


@dataclass
class Answer:
    at: float  # monotonic
    kind: str  # add, checkout
    status: int
    retry_after: bool
    body: str = ""  # of a failure


@dataclass
class Traffic:
    """Shoppers over HTTP: each owns its sessions, adds one unit twice, then checks out with
    a key, retrying 503s with that key until it is answered. Every answer is recorded; what
    each cart must hold follows from the acknowledged adds."""

    stack: Stack
    http: httpx.AsyncClient
    answers: list[Answer] = field(default_factory=list)
    acknowledged: dict[str, tuple[str, int]] = field(
        default_factory=dict
    )  # order -> session, units
    cart: dict[str, int] = field(default_factory=dict)  # session -> units acknowledged
    unsure: dict[str, int] = field(default_factory=dict)  # session -> adds answered 503
    unsettled: set[str] = field(default_factory=set)  # checkouts never answered in the bound
    stop: bool = False

    async def start(self, sessions: list[str]) -> list[asyncio.Task[None]]:
        """`STOCK` mugs in the catalog, then `SHOPPERS` shoppers sharing `sessions` out."""
        put = await self.http.put(
            f"{self.stack.inventory.url}/items/mug",
            json={"name": "Mug", "price_cents": 100, "stock": STOCK},
            headers={"X-Admin-Token": self.stack.admin_token},
        )
        assert put.status_code == 200, put.text
        return [asyncio.create_task(self.shopper(sessions[n::SHOPPERS])) for n in range(SHOPPERS)]

    def record(self, kind: str, response: httpx.Response) -> None:
        retry_after = "retry-after" in response.headers
        body = "" if response.status_code in (200, 201) else response.text[:200]
        self.answers.append(Answer(time.monotonic(), kind, response.status_code, retry_after, body))

    async def shopper(self, sessions: list[str]) -> None:
        attempt = 0
        while not self.stop:
            session = sessions[attempt % len(sessions)]
            attempt += 1
            auth = bearer(session)
            for _ in range(2):
                response = await self.http.post(
                    f"{self.stack.inventory.url}/cart/items",
                    json={"item": {"id": "mug"}, "quantity": 1},
                    headers=auth,
                )
                self.record("add", response)
                if response.status_code == 201:
                    self.cart[session] = response.json()["line"]["quantity"]
                elif response.status_code == 503:
                    self.unsure[session] = self.unsure.get(session, 0) + 1
                    await asyncio.sleep(0.05)
            if not self.cart.get(session):
                continue  # nothing acknowledged to order (an empty cart is a 400)
            key = f"{session}-{attempt}-{secrets.token_hex(2)}"
            for _ in range(CHECKOUT_RETRIES):
                response = await self.http.post(
                    f"{self.stack.checkout.url}/checkout",
                    json={"payment": {"token": "tok_visa"}},
                    headers={**auth, "Idempotency-Key": key},
                )
                self.record("checkout", response)
                if response.status_code != 503:
                    break
                await asyncio.sleep(0.1)
            else:
                self.unsettled.add(session)
                continue
            if response.status_code == 200:
                order = response.json()["order"]
                units = sum(line["quantity"] for line in order["items"])
                expected = self.cart.get(session, 0)
                assert expected <= units <= expected + self.unsure.get(session, 0), (
                    "an order without the cart's acknowledged units",
                    order,
                    expected,
                )
                self.acknowledged[order["id"]] = (session, units)
                self.cart[session] = 0
                self.unsure[session] = 0

    def bad(self) -> list[Answer]:
        """Answers that are neither a success nor a 503 with Retry-After."""
        return [
            a
            for a in self.answers
            if not (a.status in (200, 201) or (a.status == 503 and a.retry_after))
        ]

    def statuses(self, since: float = 0.0, until: float = float("inf")) -> dict[int, int]:
        return dict(Counter(a.status for a in self.answers if since <= a.at < until))


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as client:
        yield client


def cluster_env(cluster: ClusterDeployment, prefix: str) -> dict[str, str]:
    return {
        "REDIS_CLUSTER_NODES": cluster.seeds,
        "REDIS_PASSWORD": cluster.password,
        "REDIS_KEY_PREFIX": prefix,
    }


def direct_settings(cluster: ClusterDeployment, prefix: str, **overrides: Any) -> Settings:
    return make_settings(
        "redis://ignored:6379/0",
        redis_cluster_nodes=cluster.seeds,
        redis_password=cluster.password,
        redis_key_prefix=prefix,
        **overrides,
    )


async def check_nothing_lost(
    cluster: ClusterDeployment, prefix: str, traffic: Traffic, *, carts_exact: bool
) -> dict[str, int]:
    """After the traffic: every acknowledged order paid and sold once, stock conserved, and
    (`carts_exact`) every cart holding its acknowledged units. Returns the figures."""
    settings = direct_settings(cluster, prefix)
    keys = ClusterKeys(prefix)
    stores = Stores.from_settings(settings)
    client: Redis = stores.redis
    try:
        # Checkouts the clients gave up on (none expected) are repaired as the reaper would.
        await stores.orders.release_expired(now_ms=FAR_FUTURE_MS)
        entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(keys.orders_stream)  # type: ignore[assignment]
        ledger = {
            fields[b"order_id"].decode(): sum(
                line["quantity"] for line in orjson.loads(fields[b"items"])
            )
            for _, fields in entries
        }
        assert len(ledger) == len(entries), "an order sold twice"
        lost = set(traffic.acknowledged) - set(ledger)
        assert not lost, f"acknowledged orders lost: {len(lost)} of {len(traffic.acknowledged)}"
        found = 0
        for order_id, (session, units) in traffic.acknowledged.items():
            order = orjson.loads(await stores.orders.get_json(session, order_id))
            assert order["status"] == "paid" and ledger[order_id] == units, order
            found += 1
        on_hand = int(await client.hget(keys.stock, "mug") or 0)
        reserved = int(await client.hget(keys.reserved, "mug") or 0)
        assert (reserved, on_hand + sum(ledger.values())) == (0, STOCK), (on_hand, reserved)
        cart_units_lost = 0
        for session, acknowledged in traffic.cart.items():
            if session in traffic.unsettled:
                continue
            raw = await client.hget(keys.cart(session), "mug")
            held = int(raw or 0)
            if carts_exact:
                most = acknowledged + traffic.unsure.get(session, 0)
                assert acknowledged <= held <= most, (session, acknowledged, held)
            cart_units_lost += max(0, acknowledged - held)
        return {
            "orders_acknowledged": len(traffic.acknowledged),
            "orders_found_paid": found,
            "orders_in_stream": len(ledger),
            "cart_units_lost": cart_units_lost,
        }
    finally:
        await stores.aclose()


def recovered_after(traffic: Traffic, since: float, kind: str) -> tuple[int, float]:
    """The `kind` requests that failed after `since`, and the seconds from `since` to the
    first success after the last of them."""
    mine = [a for a in traffic.answers if a.kind == kind and a.at >= since]
    failures = [a.at for a in mine if a.status not in (200, 201)]
    start = max(failures, default=since)
    successes = [a.at for a in mine if a.at > start and a.status in (200, 201)]
    return len(failures), (min(successes) - since) if successes else float("nan")


# --- resharding live carts -----------------------------------------------------------------


def master_slots(node: ClusterNode) -> list[int]:
    """The slots `node` serves, lowest first (CLUSTER SLOTS)."""
    client: Any = node.client()
    try:
        ranges = client.execute_command("CLUSTER SLOTS")
    finally:
        client.close()
    slots: list[int] = []
    for entry in ranges:
        start, end, owner = int(entry[0]), int(entry[1]), entry[2]
        if int(owner[1]) == node.port:
            slots.extend(range(start, end + 1))
    return sorted(slots)


RESHARD_SLOTS = 2000


async def test_resharding_live_carts_answers_only_retriable_503s_and_loses_nothing(
    cluster: ClusterDeployment, http: httpx.AsyncClient
) -> None:
    """`redis-cli --cluster reshard` moves the first 2,000 slots of a master, which hold the
    carts of 24 live sessions, to another master while 8 shoppers use those carts and
    check out."""
    prefix = f"r{secrets.token_hex(3)}:"
    keys = ClusterKeys(prefix)
    source, target = cluster.masters()[:2]
    moving = set(master_slots(source)[:RESHARD_SLOTS])
    sessions = sessions_on(cluster, keys, source, 3 * SHOPPERS, "resharded", moving)
    with running_stack("redis://ignored:6379/0", **cluster_env(cluster, prefix)) as stack:
        traffic = Traffic(stack, http)
        workers = await traffic.start(sessions)
        await asyncio.sleep(1.5)
        started = time.monotonic()
        command = [
            "redis-cli", "-a", cluster.password, "--no-auth-warning",
            "--cluster", "reshard", f"{LOOPBACK}:{source.port}",
            "--cluster-from", node_id(source), "--cluster-to", node_id(target),
            "--cluster-slots", str(RESHARD_SLOTS), "--cluster-yes",
            "--cluster-pipeline", "10",
        ]  # fmt: skip
        reshard = await asyncio.to_thread(source.container.exec_run, command)
        finished = time.monotonic()
        assert reshard.exit_code == 0, reshard.output.decode()[-2000:]
        await asyncio.sleep(1.5)
        traffic.stop = True
        await asyncio.gather(*workers)

    assert not traffic.bad(), traffic.bad()[:10]
    assert not traffic.unsettled, traffic.unsettled
    moved_to = {node_of(cluster, keys.cart(session)).port for session in sessions}
    assert moved_to == {target.port}, "the live carts' slots moved"
    figures = await check_nothing_lost(cluster, prefix, traffic, carts_exact=True)
    during = traffic.statuses(started, finished)
    print(  # noqa: T201  (pytest -rP shows it)
        f"{cluster.version}: reshard of {RESHARD_SLOTS} slots in {finished - started:.1f} s; "
        f"requests {len(traffic.answers)} {traffic.statuses()}; during the reshard {during}; "
        f"{figures}"
    )
    assert figures["orders_acknowledged"] > 0


# --- the master of live sessions killed, failed over, restarted ------------------------------


def own_entry(node: ClusterNode) -> dict[str, Any]:
    """`node`'s own entry of CLUSTER NODES (as redis-py parses it: flags, master_id, ...)."""
    client: Any = node.client(decode_responses=True)
    try:
        nodes: dict[str, dict[str, Any]] = client.execute_command("CLUSTER NODES")
    finally:
        client.close()
    return next(entry for entry in nodes.values() if "myself" in entry["flags"])


async def test_killing_a_sessions_master_during_traffic_loses_no_acknowledged_order(
    cluster: ClusterDeployment, http: httpx.AsyncClient
) -> None:
    """The master of 16 live sessions' slots (not the `{stock}` master) is killed while 8
    shoppers (16 more sessions on the other masters) add and check out; its replica is
    promoted; the old master is restarted and rejoins as the promoted one's replica."""
    prefix = f"k{secrets.token_hex(3)}:"
    keys = ClusterKeys(prefix)
    stock_master = node_of(cluster, keys.stock)
    victim = next(node for node in cluster.masters() if node.port != stock_master.port)
    others = [node for node in cluster.masters() if node.port != victim.port]
    sessions = sessions_on(cluster, keys, victim, 2 * SHOPPERS, "victim")
    for other in others:
        sessions += sessions_on(cluster, keys, other, SHOPPERS, f"other-{other.port}")
    env = cluster_env(cluster, prefix)
    with running_stack("redis://ignored:6379/0", **env) as stack:
        traffic = Traffic(stack, http)
        workers = await traffic.start(sessions)
        await asyncio.sleep(1.5)
        killed = time.monotonic()
        await asyncio.to_thread(victim.kill)
        await asyncio.to_thread(cluster.wait_until_ok, masters=3, replicated=False)
        promoted_at = time.monotonic()
        promoted = node_of(cluster, keys.cart(sessions[0]))
        await asyncio.sleep(1.0)
        restarted = time.monotonic()
        await asyncio.to_thread(victim.start)
        await asyncio.to_thread(cluster.wait_until_ok, masters=3)
        rejoined = time.monotonic()
        await asyncio.sleep(2.0)
        traffic.stop = True
        await asyncio.gather(*workers)
        ended = time.monotonic()

    assert promoted.port != victim.port
    entry = own_entry(victim)
    assert "slave" in entry["flags"] and entry["master_id"] == node_id(promoted), entry
    assert not traffic.bad(), traffic.bad()[:10]
    assert not traffic.unsettled, traffic.unsettled
    after = traffic.statuses(rejoined, ended)
    # Once the old master is back as a replica, nothing fails: traffic is unaffected.
    assert set(after) <= {200, 201} and after, after
    figures = await check_nothing_lost(cluster, prefix, traffic, carts_exact=False)
    assert figures["orders_acknowledged"] > 0
    adds = recovered_after(traffic, killed, "add")
    checkouts = recovered_after(traffic, killed, "checkout")
    print(  # noqa: T201
        f"{cluster.version}: requests {len(traffic.answers)} {traffic.statuses()}; "
        f"kill to promoted {promoted_at - killed:.1f} s; adds: {adds[0]} failed, "
        f"succeeding again {adds[1]:.1f} s after the kill; checkouts: {checkouts[0]} "
        f"failed, {checkouts[1]:.1f} s (the promoted master has no replica until the "
        f"restart: WAIT); restart at {restarted - killed:.1f} s, rejoined "
        f"{rejoined - restarted:.1f} s later, then {after}; {figures}"
    )


# --- step A confirmed on a replica before the stock slot is touched --------------------------


class Charges:
    def __init__(self) -> None:
        self.references: list[str] = []

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> Any:
        self.references.append(reference)
        return PaymentResult(approved=True)


async def test_a_checkout_whose_first_step_no_replica_holds_is_neither_charged_nor_sold(
    cluster: ClusterDeployment,
) -> None:
    """The session's master acknowledges step A but its replica never gets it (cut off);
    the master dies and the replica takes over without A. Before the fix, B, the payment, C
    and D went ahead on the unconfirmed A (only D's WAIT failed: 503): after the failover the
    order was gone from the session's slot but sold in the stream and charged, and the
    client's retry made, charged and sold a second order for the same cart. Now A is
    confirmed by WAIT (pipelined with it: still 4 round trips) before the stock is touched."""
    prefix = f"a{secrets.token_hex(3)}:"
    keys = ClusterKeys(prefix)
    stock_master = node_of(cluster, keys.stock)
    master = next(node for node in cluster.masters() if node.port != stock_master.port)
    session = sessions_on(cluster, keys, master, 1, "cut-off")[0]
    replica = replica_of(cluster, master)
    settings = direct_settings(cluster, prefix, redis_wait_timeout_ms=300)
    stores = Stores.from_settings(settings)
    try:
        await stores.catalog.put("mug", ItemIn(name="mug", price_cents=100, stock=10))
        await stores.carts.add(session, "mug", 2)
        # The cart is on the replica before it is cut off: a write of this connection in the
        # session's slot and WAIT for it (WAIT counts only the connection's own writes).
        probe: Any = master.client()
        try:
            probe.set(f"{prefix}{keys.session_tag(session)}:probe", "1")
            assert probe.wait(1, 5000) == 1
        finally:
            probe.close()
        break_replication(master, replica)
        charges = Charges()
        with pytest.raises(StoreUnavailable):
            await stores.orders.checkout(
                session, payment_token="tok_visa", processor=charges, idempotency_key="k"
            )
        await asyncio.to_thread(master.kill)
        replica_client: Any = replica.client()
        try:
            replica_client.config_set("masterauth", cluster.password)
        finally:
            replica_client.close()
        await asyncio.to_thread(cluster.wait_until_ok, masters=3, replicated=False)
        await asyncio.to_thread(master.start)  # back as the promoted one's replica: WAIT can pass
        await asyncio.to_thread(cluster.wait_until_ok, masters=3)
        fresh = Stores.from_settings(settings)  # a new process: topology read afresh
        try:
            for _ in range(50):
                try:
                    paid = await fresh.orders.checkout(
                        session, payment_token="tok_visa", processor=charges, idempotency_key="k"
                    )
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.1)
            assert paid.status_code == 200, paid.body
            await fresh.orders.release_expired(now_ms=FAR_FUTURE_MS)
            order_id = orjson.loads(paid.body)["order"]["id"]
            client = fresh.redis
            entries: list[tuple[bytes, dict[bytes, bytes]]] = await client.xrange(
                keys.orders_stream
            )  # type: ignore[assignment]
            sold = [fields[b"order_id"].decode() for _, fields in entries]
            assert sold == [order_id], ("a sale for an order that is not the customer's", sold)
            assert set(charges.references) == {order_id}, ("charged for", charges.references)
            on_hand = int(await client.hget(keys.stock, "mug") or 0)
            reserved = int(await client.hget(keys.reserved, "mug") or 0)
            assert (on_hand, reserved) == (8, 0)
        finally:
            await fresh.aclose()
    finally:
        await stores.aclose()


class DeclinedOnceCutOff:
    """Declines the card, after the `{stock}` master's replica got step B (the reservation)
    and was then cut off: the compensation that follows (`saga_release`) reaches no replica."""

    def __init__(self, master: ClusterNode, replica: ClusterNode, probe_key: str) -> None:
        self._master, self._replica, self._probe_key = master, replica, probe_key

    def _cut_off_after_b(self) -> None:
        probe: Any = self._master.client()
        try:
            # A write of this connection and WAIT for it: the replica has everything before it.
            probe.set(self._probe_key, "1")
            assert probe.wait(1, 5000) == 1, "the replica did not get step B"
        finally:
            probe.close()
        break_replication(self._master, self._replica)

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> Any:
        await asyncio.to_thread(self._cut_off_after_b)
        return PaymentResult(approved=False, reason="card declined")


async def test_a_declined_checkout_whose_release_no_replica_holds_loses_no_unit(
    cluster: ClusterDeployment,
) -> None:
    """The `{stock}` master's replica holds step B (2 units reserved) but not the release of
    the declined checkout that follows; the session side's cancel is applied (402, the cart
    back); then the stock master dies and that replica takes over. Before the fix the
    promoted replica kept the 2 units `reserved` under an order pending nowhere: no reaper
    pass could give them back (lost for ever). Now the reaper also sweeps the stock slot's
    index of reservations for ones past the timeout whose order is not pending, and
    releases them."""
    prefix = f"r{secrets.token_hex(3)}:"
    keys = ClusterKeys(prefix)
    stock_master = node_of(cluster, keys.stock)
    stock_replica = replica_of(cluster, stock_master)
    master = next(node for node in cluster.masters() if node.port != stock_master.port)
    session = sessions_on(cluster, keys, master, 1, "declined")[0]
    settings = direct_settings(cluster, prefix, redis_wait_timeout_ms=300)
    stores = Stores.from_settings(settings)
    try:
        await stores.catalog.put("mug", ItemIn(name="mug", price_cents=100, stock=10))
        await stores.carts.add(session, "mug", 2)
        processor = DeclinedOnceCutOff(stock_master, stock_replica, f"{prefix}{{stock}}:probe")
        declined = await stores.orders.checkout(
            session, payment_token="tok_visa", processor=processor, idempotency_key="k"
        )
        assert declined.status_code == 402, declined.body
        await asyncio.to_thread(stock_master.kill)
        replica_client: Any = stock_replica.client()
        try:
            replica_client.config_set("masterauth", cluster.password)
        finally:
            replica_client.close()
        await asyncio.to_thread(cluster.wait_until_ok, masters=3, replicated=False)
        await asyncio.to_thread(stock_master.start)  # back as the promoted one's replica
        await asyncio.to_thread(cluster.wait_until_ok, masters=3)
        fresh = Stores.from_settings(settings)  # a new process: topology read afresh
        try:
            client = fresh.redis
            # The promoted replica holds the reservation the release had ended.
            assert int(await client.hget(keys.reserved, "mug") or 0) == 2
            for _ in range(50):
                try:
                    await fresh.orders.release_expired(now_ms=FAR_FUTURE_MS)
                    break
                except StoreUnavailable:
                    await asyncio.sleep(0.1)
            on_hand = int(await client.hget(keys.stock, "mug") or 0)
            reserved = int(await client.hget(keys.reserved, "mug") or 0)
            sold: list[Any] = await client.xrange(keys.orders_stream)  # type: ignore[assignment]
            assert (on_hand, reserved, len(sold)) == (10, 0, 0), "units lost or invented"
            cart = orjson.loads(await fresh.carts.get(session))
            assert cart == [{"id": "mug", "quantity": 2}]  # restored by the cancel
        finally:
            await fresh.aclose()
    finally:
        await stores.aclose()
