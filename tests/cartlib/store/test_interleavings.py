"""Seeded random schedules of concurrent shop operations against a real Redis: stock is never
created or lost, and the cart caps hold, whatever the interleaving.

Each schedule runs, at the same time on one event loop and one Redis: an admin per item
setting its stock (`PUT /items/{id}`'s absolute set), shoppers adding, setting and removing
lines and checking out (approved, declined, or cut off mid-payment and left pending; half
with an Idempotency-Key, which they retry: finishing a cut-off checkout, replaying, or, with
another payment, refused) from a few sessions shared between them (two shoppers on one
session are two browser tabs: one adds while the other's checkout is paying), a reaper
that cancels every pending checkout at random moments (as if each were past its timeout: it
races the payments), and an auditor that reads the whole state in one atomic step.
Payments yield to the event loop a random number of times, so reservations, admin sets,
declines, completions and the reaper interleave differently in every schedule. The seed
chooses the operations; the interleaving also depends on Redis's timing, so a failure
prints the seed and the trace of what ran.

Checked from Redis, in the auditor's atomic snapshots during the schedule and after it:

* per item: on hand >= 0, reserved >= 0, reserved = the units of the pending orders;
* every cart: at most `cart_max_lines` lines of 1 to `cart_max_quantity` units; every order
  too (a declined checkout's lines restored into a cart that changed meanwhile are clamped);
* after the schedule (the reaper having cancelled what was left pending): nothing reserved,
  and for each item, what is on hand is its last admin set minus the units of the orders
  paid after that set: `on hand + sold since the set = the set`. A paid order whose
  completion overlapped the set in time may count on either side (bounds).

`make test` runs a few hundred schedules (STOREFRONT_SCHEDULES overrides it, e.g. for
`make soak`; STOREFRONT_SCHEDULE_SEED picks the first seed).
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
from redis.asyncio import Redis

from cartlib.store.errors import CartError, CheckoutExpired, StoreUnavailable
from cartlib.store.keys import Keys
from cartlib.store.orders import PaymentResult
from cartlib.store.stores import Stores
from cartlib.web.models import ItemIn
from tests.cartlib.conftest import make_settings

# Per server (the redis_url fixture's ids); any other server the fixture gains gets 100.
SCHEDULES = {"redis7": 400, "redis6.2": 100}
FIRST_SEED = int(os.environ.get("STOREFRONT_SCHEDULE_SEED", "1"))
ITEMS = ("mug", "cap", "pen")
SESSIONS = ("tab-a", "tab-b")
MAX_QUANTITY = 3
MAX_LINES = 2
FAR_FUTURE_MS = 10**15


def schedule_count(server: str) -> int:
    override = os.environ.get("STOREFRONT_SCHEDULES")
    return int(override) if override else SCHEDULES.get(server, 100)


class Crash(Exception):
    """A checkout process dying mid-payment: its order stays pending for the reaper."""


@dataclass
class Run:
    """What one schedule did, as the client saw it (monotonic ns for the time windows)."""

    rng: random.Random
    trace: list[str] = field(default_factory=list)
    # item -> (value, start, end) of each admin set, in the order its admin made them
    sets: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    # order id -> (start, end) of its completion: from its first charge's return to the last
    # 200 answered for it (two attempts with one key may both pay it; either completes it)
    completions: dict[str, tuple[int, int]] = field(default_factory=dict)
    charged_at: dict[str, int] = field(default_factory=dict)
    # (session, Idempotency-Key, payment token) of the checkouts sent with a key
    keys_sent: list[tuple[str, str, str]] = field(default_factory=list)
    paid: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    # Checkouts answered 503 (StoreUnavailable, NotReplicated): "try again", the outcome
    # unknown to the client. One cut off after its sale (a WAIT short of replicas after it)
    # is pending with its units sold, and is finished as paid later, by the reaper or a
    # retry of its key: a sale its client never got a 200 for, legitimately.
    unknown_outcomes: int = 0
    snapshots: int = 0

    def log(self, text: str) -> None:
        self.trace.append(text)


class ScheduledPayments:
    """Approves tok_visa and declines tok_declined after a random number of event-loop turns
    (other operations run meanwhile); one charge in five dies instead, as a process would."""

    def __init__(self, run: Run) -> None:
        self.run = run

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        await pause(self.run.rng, longest=12)
        if self.run.rng.random() < 0.2:
            raise Crash(reference)
        # The first approval of an order: no attempt can complete it before that.
        self.run.charged_at.setdefault(reference, time.monotonic_ns())
        return PaymentResult(approved=token == "tok_visa", reason="card declined")


async def pause(rng: random.Random, longest: int = 4) -> None:
    for _ in range(rng.randint(0, longest)):
        await asyncio.sleep(0)
    if rng.random() < 0.1:
        await asyncio.sleep(0.001)


# The whole state in one atomic step: stock (on hand) and reserved hashes, the items of every
# pending order, every cart. ARGV[1] is the order key prefix.
SNAPSHOT = """
local out = {stock = redis.call('HGETALL', KEYS[1]), reserved = redis.call('HGETALL', KEYS[2]),
  pending = {}, carts = {}}
for _, id in ipairs(redis.call('ZRANGE', KEYS[3], 0, -1)) do
  out.pending[#out.pending + 1] = redis.call('HGET', ARGV[1] .. id, 'items') or '[]'
end
for i = 4, #KEYS do
  out.carts[#out.carts + 1] = redis.call('HGETALL', KEYS[i])
end
return cjson.encode(out)
"""


def as_dict(flat: Any) -> dict[str, int]:
    # cjson encodes an empty Lua table as {}, a flat HGETALL reply as a list
    if not flat:
        return {}
    return {flat[i]: int(flat[i + 1]) for i in range(0, len(flat), 2)}


def reserved_key(keys: Keys) -> str:
    """The key layout of docs/design.md: units held by pending checkouts, per item."""
    return f"{keys.prefix}stock:reserved"


async def audit(redis: Redis, keys: Keys, run: Run) -> None:
    """Read the whole state atomically and check every invariant that holds at any time."""
    raw = await redis.eval(
        SNAPSHOT,
        3 + len(SESSIONS),
        keys.stock,
        reserved_key(keys),
        keys.pending_checkouts,
        *(keys.cart(session) for session in SESSIONS),
        keys.order(""),
    )
    state = orjson.loads(raw)
    on_hand, reserved = as_dict(state["stock"]), as_dict(state["reserved"])
    held: dict[str, int] = {}
    for items in state["pending"]:
        for line in orjson.loads(items):
            held[line["id"]] = held.get(line["id"], 0) + line["quantity"]
            assert 1 <= line["quantity"] <= MAX_QUANTITY, ("pending order over the cap", items)
    for item in ITEMS:
        assert on_hand.get(item, 0) >= 0, ("negative stock", item, on_hand)
        assert reserved.get(item, 0) == held.get(item, 0), ("reserved", item, reserved, held)
    for cart in state["carts"]:
        lines = as_dict(cart)
        assert len(lines) <= MAX_LINES, ("too many lines", lines)
        assert all(1 <= units <= MAX_QUANTITY for units in lines.values()), ("line cap", lines)
    run.snapshots += 1


async def admin(stores: Stores, run: Run, item: str) -> None:
    rng = run.rng
    for _ in range(rng.randint(1, 4)):
        await pause(rng, longest=20)
        value = rng.randint(0, 6)
        start = time.monotonic_ns()
        await stores.catalog.put(item, ItemIn(name=item, price_cents=100, stock=value))
        run.sets.setdefault(item, []).append((value, start, time.monotonic_ns()))
        run.log(f"set {item}={value}")


async def shopper(stores: Stores, run: Run, payments: ScheduledPayments, name: str) -> None:
    rng = run.rng
    for _ in range(rng.randint(3, 8)):
        await pause(rng)
        session = rng.choice(SESSIONS)
        item = rng.choice(ITEMS)
        roll = rng.random()
        try:
            if roll < 0.45:
                change = await stores.carts.add(session, item, rng.randint(1, MAX_QUANTITY))
                run.log(f"{name} add {session} {item} -> {change.quantity}")
            elif roll < 0.55:
                change = await stores.carts.set(session, item, rng.randint(0, MAX_QUANTITY))
                run.log(f"{name} set {session} {item} -> {change.quantity}")
            elif roll < 0.7 and run.keys_sent:
                # A retry of a key (finishing a cut-off checkout, or a replay), now and then
                # with another payment (refused).
                session, sent_key, token = rng.choice(run.keys_sent)
                if rng.random() < 0.2:
                    token = "tok_declined" if token == "tok_visa" else "tok_visa"
                await checkout(stores, run, payments, session, token, sent_key)
            else:
                token = rng.choice(["tok_visa", "tok_visa", "tok_declined"])
                key = f"{name}-{len(run.trace)}" if rng.random() < 0.5 else None
                if key:
                    run.keys_sent.append((session, key, token))
                await checkout(stores, run, payments, session, token, key)
        except CartError as error:
            run.log(f"{name} {session}: {type(error).__name__}")


async def checkout(
    stores: Stores,
    run: Run,
    payments: ScheduledPayments,
    session: str,
    token: str,
    key: str | None,
) -> None:
    attempt = f"checkout {session} {token} key={key}"
    try:
        response = await stores.orders.checkout(
            session, payment_token=token, processor=payments, idempotency_key=key
        )
    except Crash as crash:
        run.log(f"{attempt}: crashed, {crash} left pending")
        return
    except CheckoutExpired:
        run.log(f"{attempt}: expired by the reaper")
        return
    except StoreUnavailable as error:
        run.unknown_outcomes += 1
        run.log(f"{attempt}: 503 {type(error).__name__}")
        return
    end = time.monotonic_ns()
    body = orjson.loads(response.body)
    run.log(f"{attempt}: {response.status_code}")
    if response.status_code == 200:
        order = body["order"]
        run.paid[order["id"]] = order["items"]
        run.completions[order["id"]] = (run.charged_at[order["id"]], end)


async def reaper(stores: Stores, run: Run) -> None:
    for _ in range(run.rng.randint(0, 3)):
        await pause(run.rng, longest=30)
        released = await stores.orders.release_expired(now_ms=FAR_FUTURE_MS)
        run.log(f"reaper released {released}")


async def auditor(redis: Redis, keys: Keys, run: Run) -> None:
    for _ in range(run.rng.randint(1, 4)):
        await pause(run.rng, longest=20)
        await audit(redis, keys, run)


def check_stock_conserved(run: Run, on_hand: dict[str, int]) -> None:
    """On hand = the last set minus the units paid after it (bounds for completions that
    overlapped the set in time)."""
    for item, sets in run.sets.items():
        value, set_start, set_end = sets[-1]
        surely_after = maybe_after = 0
        for order_id, lines in run.paid.items():
            units = sum(line["quantity"] for line in lines if line["id"] == item)
            started, ended = run.completions[order_id]
            if started > set_end:
                surely_after += units
            elif ended >= set_start:
                maybe_after += units
        low, high = value - surely_after - maybe_after, value - surely_after
        assert low <= on_hand.get(item, 0) <= high, (
            f"{item}: on hand {on_hand.get(item, 0)}, expected {low}..{high} after a set to "
            f"{value} ({surely_after} units surely and {maybe_after} maybe paid after it)"
        )


async def run_schedule(redis: Redis, redis_url: str, seed: int, run: Run) -> None:
    keys = Keys(f"i{seed}:")
    stores = Stores.from_settings(
        make_settings(
            redis_url,
            redis_key_prefix=keys.prefix,
            cart_max_quantity=MAX_QUANTITY,
            cart_max_lines=MAX_LINES,
        ),
        redis=redis,
    )
    payments = ScheduledPayments(run)
    for item in ITEMS:
        await stores.catalog.put(item, ItemIn(name=item, price_cents=100, stock=6))
        run.sets[item] = [(6, 0, time.monotonic_ns())]
    actors: list[Awaitable[None]] = [admin(stores, run, item) for item in ITEMS]
    actors += [shopper(stores, run, payments, f"shopper{n}") for n in range(4)]
    actors += [reaper(stores, run), auditor(redis, keys, run)]
    await asyncio.gather(*actors)

    # Cancel whatever was left pending, then read everything back.
    await stores.orders.release_expired(now_ms=FAR_FUTURE_MS)
    await audit(redis, keys, run)
    assert await redis.zcard(keys.pending_checkouts) == 0
    stock: dict[bytes, bytes] = await redis.hgetall(keys.stock)  # type: ignore[assignment]
    on_hand = {item.decode(): int(units) for item, units in stock.items()}
    assert not any(int(v) for v in (await redis.hvals(reserved_key(keys)))), "still reserved"
    check_stock_conserved(run, on_hand)
    for order_id, lines in run.paid.items():
        assert await redis.hget(keys.order(order_id), "status") == b"paid"
        assert len(lines) <= MAX_LINES
        assert all(1 <= line["quantity"] <= MAX_QUANTITY for line in lines), lines
    # The API shows what is on hand and not reserved: here, everything on hand.
    for item in ITEMS:
        shown = orjson.loads(await stores.catalog.get_json(item))["stock"]
        assert shown == on_hand.get(item, 0)


@pytest.fixture
async def shared_redis(redis_url: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_url, max_connections=64)
    yield client
    await client.aclose()


async def run_schedules(
    redis: Redis, redis_url: str, seeds: range, on_run: Callable[[Run], None]
) -> None:
    for seed in seeds:
        run = Run(random.Random(seed))
        try:
            await run_schedule(redis, redis_url, seed, run)
        except AssertionError as error:
            trace = "\n  ".join(run.trace[-60:])
            raise AssertionError(f"schedule seed {seed} failed: {error}\n  {trace}") from error
        on_run(run)


async def test_stock_and_caps_hold_under_random_interleavings(
    shared_redis: Redis, redis_url: str, request: pytest.FixtureRequest
) -> None:
    server = request.node.callspec.id
    count = schedule_count(server)
    seeds = range(FIRST_SEED, FIRST_SEED + count)
    totals = dict.fromkeys(
        ("schedules", "snapshots", "paid", "declined", "expired", "refused keys"), 0
    )

    def tally(run: Run) -> None:
        totals["schedules"] += 1
        totals["snapshots"] += run.snapshots
        totals["paid"] += len(run.paid)
        totals["declined"] += sum(line.endswith(": 402") for line in run.trace)
        totals["refused keys"] += sum("IdempotencyKeyReused" in line for line in run.trace)
        totals["expired"] += sum("expired by the reaper" in line for line in run.trace)

    await run_schedules(shared_redis, redis_url, seeds, tally)
    print(f"{server}: {totals}")  # noqa: T201  (pytest -rP shows it)
    # The schedules did exercise what they are about.
    assert totals["schedules"] == count
    assert totals["paid"] > count // 4
    assert totals["declined"] > 0 and totals["expired"] > 0 and totals["refused keys"] > 0
