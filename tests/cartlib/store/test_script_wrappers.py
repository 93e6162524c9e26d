"""The typed boundary of every Lua script (`cartlib/store/scripts/<name>.py`): each result variant
a wrapper can return, produced by a real run of its script against a real Redis, with the
state the script left read back. The wrappers name the keys and arguments; these tests are
what proves the order they send them in is the order each script reads them in."""

from __future__ import annotations

import secrets

import orjson
import pytest
from redis.asyncio import Redis

from cartlib.store.durability import ReplicatedWrites
from cartlib.store.keys import ClusterKeys, Keys
from cartlib.store.scripts.add_item import AddItem
from cartlib.store.scripts.begin_checkout import BeginCheckout, Reserved
from cartlib.store.scripts.cancel_checkout import CancelCheckout
from cartlib.store.scripts.cart_write import (
    Changed,
    OverLineCount,
    OverQuantityCap,
    OverStock,
    StockHashes,
    StockHint,
    UnknownItem,
)
from cartlib.store.scripts.complete_checkout import (
    CompleteCheckout,
    Completed,
    CompleteResult,
    SoldOut,
)
from cartlib.store.scripts.get_cart import GetCart
from cartlib.store.scripts.get_item import GetItem
from cartlib.store.scripts.list_items import ListItems
from cartlib.store.scripts.put_item import PutItem
from cartlib.store.scripts.release_lock import ReleaseLock
from cartlib.store.scripts.resume_checkout import (
    Forgotten,
    Gone,
    ResumeCheckout,
    ResumeResult,
    StillPending,
)
from cartlib.store.scripts.saga_begin import Begun, SagaBegin, SagaBeginResult
from cartlib.store.scripts.saga_cancel import SagaCancel
from cartlib.store.scripts.saga_commit import OutOfStock, SagaCommit
from cartlib.store.scripts.saga_finish import Finished, SagaFinish
from cartlib.store.scripts.saga_release import SagaRelease
from cartlib.store.scripts.saga_reserve import Reserved as SagaReserved
from cartlib.store.scripts.saga_reserve import SagaReserve
from cartlib.store.scripts.set_item import SetItem
from cartlib.store.scripts.shared import (
    Cancellation,
    Cancelled,
    Committed,
    DeclinedTooOften,
    Empty,
    FinishedCheckout,
    InFlight,
    KeyRecord,
    Line,
    NotPending,
    Opening,
    PricedLine,
    Released,
    Replay,
    Replicated,
    Reservation,
    Shortage,
    ShortLine,
)

SESSION = "s-1"
FINGERPRINT = "f" * 32
TTL_MS = 60_000
PAID = FinishedCheckout(200, b'{"message":"paid"}')
DECLINED = FinishedCheckout(402, b'{"detail":"Payment declined"}')
SOLD_OUT = FinishedCheckout(409, b'{"detail":"sold out"}')


@pytest.fixture
def keys() -> Keys:
    return Keys(f"w{secrets.token_hex(3)}:")


@pytest.fixture
def ckeys() -> ClusterKeys:
    return ClusterKeys(f"w{secrets.token_hex(3)}:")


async def put(redis: Redis, keys: Keys, item: str, on_hand: int, price_cents: int = 250) -> None:
    assert await PutItem(redis)(
        catalog=keys.catalog,
        stock=keys.stock,
        item_id=item,
        name=item.title(),
        price_cents=price_cents,
        on_hand=on_hand,
        keep_existing=False,
    )


def opening(order_id: str, max_declines: int = 5) -> Opening:
    return Opening(order_id, SESSION, 1_000, TTL_MS, FINGERPRINT, max_declines)


def cancellation(order_id: str, status: str, remember: FinishedCheckout | None) -> Cancellation:
    return Cancellation(order_id, status, TTL_MS, remember, 60, 0, 3, 2, TTL_MS)


# --- catalog, cart and lock scripts --------------------------------------------------------


async def test_put_item_writes_or_keeps_and_get_and_list_items_read(
    raw_redis: Redis, keys: Keys
) -> None:
    put_item, get_item = PutItem(raw_redis), GetItem(raw_redis)
    written = await put_item(
        catalog=keys.catalog,
        stock=keys.stock,
        item_id="mug",
        name="Mug",
        price_cents=1299,
        on_hand=5,
        keep_existing=True,
    )
    kept = await put_item(
        catalog=keys.catalog,
        stock=keys.stock,
        item_id="mug",
        name="Other",
        price_cents=1,
        on_hand=9,
        keep_existing=True,
    )
    assert (written, kept) == (True, False)
    await raw_redis.hset(keys.reserved, "mug", 2)
    item = await get_item(
        catalog=keys.catalog, stock=keys.stock, reserved=keys.reserved, item_id="mug"
    )
    assert item is not None
    assert orjson.loads(item) == {"id": "mug", "name": "Mug", "price_cents": 1299, "stock": 3}
    missing = await get_item(
        catalog=keys.catalog, stock=keys.stock, reserved=keys.reserved, item_id="nope"
    )
    assert missing is None
    listing = await ListItems(raw_redis)(
        catalog=keys.catalog, stock=keys.stock, reserved=keys.reserved
    )
    assert orjson.loads(listing) == {"items": [orjson.loads(item)]}


@pytest.mark.parametrize("source", ["hashes", "hint"])
async def test_add_item_gives_every_result(raw_redis: Redis, keys: Keys, source: str) -> None:
    await put(raw_redis, keys, "mug", on_hand=4)
    await put(raw_redis, keys, "cap", on_hand=4)
    await put(raw_redis, keys, "pen", on_hand=4)
    add = AddItem(raw_redis)
    cart = keys.cart(SESSION)

    async def add_units(item: str, units: int) -> object:
        known = item != "ghost"
        stock = (
            StockHashes(keys.stock, keys.reserved)
            if source == "hashes"
            else StockHint(4 if known else None)
        )
        return await add(
            cart=cart,
            stock=stock,
            item_id=item,
            units=units,
            max_quantity=3,
            max_lines=2,
            ttl_ms=TTL_MS,
        )

    assert await add_units("mug", 2) == Changed(quantity=2, line_count=1)
    assert await add_units("mug", 2) == OverQuantityCap(in_cart=2)
    assert await add_units("ghost", 1) == UnknownItem()
    assert await add_units("cap", 1) == Changed(quantity=1, line_count=2)
    assert await add_units("pen", 1) == OverLineCount()
    assert await raw_redis.hgetall(cart) == {b"mug": b"2", b"cap": b"1"}
    assert 0 < await raw_redis.pttl(cart) <= TTL_MS
    if source == "hashes":
        await raw_redis.hset(keys.reserved, "cap", 3)  # 4 on hand, 3 held: 1 available
        assert await add_units("cap", 1) == OverStock(available=1)
    else:
        result = await add(
            cart=cart,
            stock=StockHint(1),
            item_id="cap",
            units=1,
            max_quantity=3,
            max_lines=2,
            ttl_ms=TTL_MS,
        )
        assert result == OverStock(available=1)
    assert orjson.loads(await GetCart(raw_redis)(cart=cart)) == [
        {"id": "cap", "quantity": 1},
        {"id": "mug", "quantity": 2},
    ]


@pytest.mark.parametrize("source", ["hashes", "hint"])
async def test_set_item_gives_every_result(raw_redis: Redis, keys: Keys, source: str) -> None:
    await put(raw_redis, keys, "mug", on_hand=2)
    await put(raw_redis, keys, "cap", on_hand=2)
    set_item = SetItem(raw_redis)
    cart = keys.cart(SESSION)

    async def set_line(item: str, quantity: int, hint: int | None = 2) -> object:
        stock = StockHashes(keys.stock, keys.reserved) if source == "hashes" else StockHint(hint)
        return await set_item(
            cart=cart, stock=stock, item_id=item, quantity=quantity, max_lines=1, ttl_ms=TTL_MS
        )

    assert await set_line("mug", 2) == Changed(quantity=2, line_count=1)
    assert await set_line("mug", 3) == OverStock(available=2)
    assert await set_line("ghost", 1, hint=None) == UnknownItem()
    assert await set_line("cap", 1) == OverLineCount()
    assert await set_line("mug", 0) == Changed(quantity=0, line_count=0)
    assert await raw_redis.exists(cart) == 0
    assert orjson.loads(await GetCart(raw_redis)(cart=cart)) == []


async def test_release_lock_deletes_only_its_owners_lock(raw_redis: Redis, keys: Keys) -> None:
    lock = keys.cache_lock("catalog", "all")
    await raw_redis.set(lock, "mine")
    release = ReleaseLock(raw_redis)
    assert await release(lock=lock, token="theirs") is False
    assert await raw_redis.get(lock) == b"mine"
    assert await release(lock=lock, token="mine") is True
    assert await raw_redis.exists(lock) == 0


# --- standalone checkout scripts -----------------------------------------------------------


async def begin(raw_redis: Redis, keys: Keys, order_id: str, key: str | None = "idem") -> object:
    return await BeginCheckout(raw_redis)(
        cart=keys.cart(SESSION),
        stock=keys.stock,
        reserved=keys.reserved,
        catalog=keys.catalog,
        order=keys.order(order_id),
        pending=keys.pending_checkouts,
        declines=keys.declines(SESSION),
        idempotency=keys.idempotency(SESSION, key) if key else None,
        opening=opening(order_id),
    )


async def test_begin_checkout_gives_every_result(raw_redis: Redis, keys: Keys) -> None:
    assert await begin(raw_redis, keys, "o1") == Empty()
    await put(raw_redis, keys, "mug", on_hand=1, price_cents=300)
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 2})
    assert await begin(raw_redis, keys, "o1") == Shortage(
        (ShortLine("mug", requested=2, available=1),)
    )
    assert await raw_redis.exists(keys.order("o1")) == 0  # nothing written

    await raw_redis.hset(keys.stock, "mug", 5)
    reserved = await begin(raw_redis, keys, "o1")
    assert reserved == Reserved(Reservation((PricedLine("mug", 2, 300),), total_cents=600))
    assert await raw_redis.hget(keys.reserved, "mug") == b"2"
    assert await raw_redis.exists(keys.cart(SESSION)) == 0

    replay = await begin(raw_redis, keys, "o2")
    record = await raw_redis.get(keys.idempotency(SESSION, "idem"))
    assert replay == Replay(KeyRecord(FINGERPRINT, InFlight("o1"), record))  # type: ignore[arg-type]

    await raw_redis.set(keys.declines(SESSION), 5, px=10_000)
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 1})
    refused = await begin(raw_redis, keys, "o3", key=None)
    assert isinstance(refused, DeclinedTooOften) and 0 < refused.retry_after_ms <= 10_000


async def test_resume_checkout_gives_every_result(raw_redis: Redis, keys: Keys) -> None:
    await put(raw_redis, keys, "mug", on_hand=5, price_cents=300)
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 1})
    await begin(raw_redis, keys, "o1")
    idem = keys.idempotency(SESSION, "idem")
    record = KeyRecord.parse(await raw_redis.get(idem))  # type: ignore[arg-type]

    async def resume(*, idempotency: str, order: str, record: KeyRecord) -> ResumeResult:
        resumed = await ResumeCheckout(raw_redis)(
            idempotency=idempotency, order=order, record=record
        )
        assert resumed.confirmed  # no replica wanted
        return resumed.result

    assert await resume(idempotency=idem, order=keys.order("o1"), record=record) == StillPending(
        (Line("mug", 1),), Reservation((PricedLine("mug", 1, 300),), 300)
    )
    await raw_redis.hset(keys.order("o1"), "status", "expired")
    gone = await resume(idempotency=idem, order=keys.order("o1"), record=record)
    assert gone == Gone("expired")
    finished = f"{FINGERPRINT}|{PAID.remembered().decode()}"
    await raw_redis.set(idem, finished)
    replayed = await resume(idempotency=idem, order=keys.order("o1"), record=record)
    assert replayed == Replay(KeyRecord(FINGERPRINT, PAID, finished.encode()))
    await raw_redis.delete(idem)
    assert await resume(idempotency=idem, order=keys.order("o1"), record=record) == Forgotten()


async def test_resume_checkout_of_a_cluster_order_holds_no_reservation(
    raw_redis: Redis, ckeys: ClusterKeys
) -> None:
    await raw_redis.hset(ckeys.cart(SESSION), mapping={"mug": 2})
    await saga_begin(raw_redis, ckeys, "o1")
    idem = ckeys.idempotency(SESSION, "idem")
    record = KeyRecord.parse(await raw_redis.get(idem))  # type: ignore[arg-type]
    resumed = await ResumeCheckout(raw_redis)(
        idempotency=idem, order=ckeys.session_order(SESSION, "o1"), record=record
    )
    assert resumed.result == StillPending((Line("mug", 2),), None)


async def test_resume_checkout_with_wait_confirms_a_pending_order_by_writing_its_record_again(
    raw_redis: Redis, ckeys: ClusterKeys
) -> None:
    """With WAIT (cluster), a still pending order's record is written again, the same value
    and TTL, so the WAIT after it covers the order's first step; on a server without
    replicas it is not confirmed. A record finished meanwhile is left as it is."""
    await raw_redis.hset(ckeys.cart(SESSION), mapping={"mug": 2})
    await saga_begin(raw_redis, ckeys, "o1")
    idem = ckeys.idempotency(SESSION, "idem")
    stored = await raw_redis.get(idem)
    assert stored is not None
    record = KeyRecord.parse(stored)  # type: ignore[arg-type]
    writes = ReplicatedWrites(raw_redis, replicas=1, timeout_ms=10)
    resume = ResumeCheckout(raw_redis, writes=writes)
    order = ckeys.session_order(SESSION, "o1")
    changes_before = await changes(raw_redis)

    resumed = await resume(idempotency=idem, order=order, record=record)
    assert (resumed.result, resumed.confirmed) == (StillPending((Line("mug", 2),), None), False)
    assert await raw_redis.get(idem) == stored
    assert 0 < await raw_redis.pttl(idem) <= 60_000
    assert await changes(raw_redis) == changes_before + 1  # written: the WAIT covers it

    finished = f"{FINGERPRINT}|{PAID.remembered().decode()}".encode()
    await raw_redis.set(idem, finished, keepttl=True)
    replayed = await resume(idempotency=idem, order=order, record=record)
    assert replayed.result == Replay(KeyRecord(FINGERPRINT, PAID, finished))
    assert await raw_redis.get(idem) == finished
    assert await changes(raw_redis) == changes_before + 2  # the SET above, nothing more


async def changes(raw_redis: Redis) -> int:
    """The server's count of writes (what is propagated to replicas)."""
    info = await raw_redis.info("persistence")
    return int(info["rdb_changes_since_last_save"])


async def complete(
    raw_redis: Redis, keys: Keys, order_id: str, writes: ReplicatedWrites | None = None
) -> Replicated[CompleteResult]:
    return await CompleteCheckout(raw_redis, writes=writes)(
        order=keys.order(order_id),
        pending=keys.pending_checkouts,
        stream=keys.orders_stream,
        stock=keys.stock,
        reserved=keys.reserved,
        cart=keys.cart(SESSION),
        idempotency=keys.idempotency(SESSION, "idem"),
        order_id=order_id,
        now_ms=2_000,
        response=PAID,
        response_ttl_seconds=60,
        stream_maxlen=100,
        request_id="req-1",
        out_of_stock=SOLD_OUT,
        out_of_stock_keep_seconds=60,
        cart_ttl_ms=TTL_MS,
        max_quantity=3,
        max_lines=2,
    )


async def test_complete_checkout_gives_every_result(raw_redis: Redis, keys: Keys) -> None:
    await put(raw_redis, keys, "mug", on_hand=5)
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 2})
    await begin(raw_redis, keys, "o1")

    paid = await complete(raw_redis, keys, "o1")
    assert (paid.result, paid.confirmed) == (Completed(), True)
    assert (
        await raw_redis.hget(keys.stock, "mug"),
        await raw_redis.hget(keys.reserved, "mug"),
    ) == (b"3", None)
    assert await raw_redis.xlen(keys.orders_stream) == 1
    again = await complete(raw_redis, keys, "o1")
    assert again.result == Completed()

    # With WAIT on a server without replicas: the order is paid, not confirmed.
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 1})
    await begin(raw_redis, keys, "o2", key="idem2")
    writes = ReplicatedWrites(raw_redis, replicas=1, timeout_ms=10)
    unconfirmed = await complete(raw_redis, keys, "o2", writes=writes)
    assert (unconfirmed.result, unconfirmed.confirmed) == (Completed(), False)

    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 2})
    await begin(raw_redis, keys, "o3", key="idem3")
    await raw_redis.hset(keys.stock, "mug", 1)  # an admin set below what o3 holds
    sold_out = await complete(raw_redis, keys, "o3")
    assert sold_out.result == SoldOut(Cancelled((), SOLD_OUT))
    assert await raw_redis.hget(keys.order("o3"), "status") == b"out_of_stock"
    assert await raw_redis.hgetall(keys.cart(SESSION)) == {b"mug": b"2"}

    await raw_redis.hset(keys.order("o4"), "status", "expired")
    assert (await complete(raw_redis, keys, "o4")).result == NotPending()


async def test_cancel_checkout_gives_every_result(raw_redis: Redis, keys: Keys) -> None:
    await put(raw_redis, keys, "mug", on_hand=5)
    await put(raw_redis, keys, "cap", on_hand=5)
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 3, "cap": 1})
    await begin(raw_redis, keys, "o1")
    await raw_redis.hset(keys.cart(SESSION), mapping={"mug": 1, "pen": 1})  # added meanwhile
    cancel = CancelCheckout(raw_redis)

    async def cancel_o1() -> object:
        return await cancel(
            order=keys.order("o1"),
            pending=keys.pending_checkouts,
            stock=keys.stock,
            reserved=keys.reserved,
            cart=keys.cart(SESSION),
            declines=keys.declines(SESSION),
            idempotency=keys.idempotency(SESSION, "idem"),
            cancellation=cancellation("o1", "declined", DECLINED),
        )

    cancelled = await cancel_o1()
    # mug: 1 in the cart + 3 capped at 3 (1 left out); cap: no third line (1 left out).
    remembered = FinishedCheckout(
        402,
        orjson.dumps(
            {
                "detail": "Payment declined",
                "not_restored": [{"id": "cap", "quantity": 1}, {"id": "mug", "quantity": 1}],
            }
        ),
    )
    assert isinstance(cancelled, Cancelled)
    assert sorted(cancelled.left_out, key=lambda line: line.id) == [Line("cap", 1), Line("mug", 1)]
    assert cancelled.remembered is not None
    assert cancelled.remembered.status_code == 402
    assert orjson.loads(cancelled.remembered.body)["detail"] == "Payment declined"
    assert (
        sorted(orjson.loads(cancelled.remembered.body)["not_restored"], key=lambda line: line["id"])
        == orjson.loads(remembered.body)["not_restored"]
    )
    assert await raw_redis.hgetall(keys.reserved) == {}
    assert await raw_redis.get(keys.declines(SESSION)) == b"1"
    assert await raw_redis.exists(keys.order("o1")) == 0
    assert await cancel_o1() == NotPending()


# --- cluster saga scripts ------------------------------------------------------------------


async def saga_begin(
    raw_redis: Redis, ckeys: ClusterKeys, order_id: str, max_declines: int = 5
) -> object:
    begun = await begin_saga(raw_redis, ckeys, order_id, max_declines)
    assert begun.confirmed  # no replica wanted
    return begun.result


async def begin_saga(
    raw_redis: Redis,
    ckeys: ClusterKeys,
    order_id: str,
    max_declines: int = 5,
    writes: ReplicatedWrites | None = None,
) -> Replicated[SagaBeginResult]:
    return await SagaBegin(raw_redis, writes=writes)(
        cart=ckeys.cart(SESSION),
        order=ckeys.session_order(SESSION, order_id),
        pending=ckeys.session_pending(SESSION),
        declines=ckeys.declines(SESSION),
        idempotency=ckeys.idempotency(SESSION, "idem"),
        opening=opening(order_id, max_declines),
    )


async def test_saga_begin_gives_every_result(raw_redis: Redis, ckeys: ClusterKeys) -> None:
    assert await saga_begin(raw_redis, ckeys, "o1") == Empty()
    await raw_redis.hset(ckeys.cart(SESSION), mapping={"mug": 2, "cap": 1})
    assert await saga_begin(raw_redis, ckeys, "o1") == Begun((Line("cap", 1), Line("mug", 2)))
    assert await raw_redis.zscore(ckeys.session_pending(SESSION), "o1") == 1_000
    replay = await saga_begin(raw_redis, ckeys, "o2")
    assert isinstance(replay, Replay) and replay.record.state == InFlight("o1")
    await raw_redis.delete(ckeys.idempotency(SESSION, "idem"))
    await raw_redis.set(ckeys.declines(SESSION), 1, px=5_000)
    refused = await saga_begin(raw_redis, ckeys, "o3", max_declines=1)
    assert isinstance(refused, DeclinedTooOften) and 0 < refused.retry_after_ms <= 5_000


async def test_saga_begin_with_wait_on_a_server_without_replicas_is_begun_unconfirmed(
    raw_redis: Redis, ckeys: ClusterKeys
) -> None:
    await raw_redis.hset(ckeys.cart(SESSION), mapping={"mug": 1})
    writes = ReplicatedWrites(raw_redis, replicas=1, timeout_ms=10)
    begun = await begin_saga(raw_redis, ckeys, "o1", writes=writes)
    assert (begun.result, begun.confirmed) == (Begun((Line("mug", 1),)), False)
    assert await raw_redis.hget(ckeys.session_order(SESSION, "o1"), "status") == b"pending"


async def reserve(raw_redis: Redis, ckeys: ClusterKeys, order_id: str, *lines: Line) -> object:
    return await SagaReserve(raw_redis)(
        reservation_key=ckeys.reservation(order_id),
        stock=ckeys.stock,
        reserved=ckeys.reserved,
        catalog=ckeys.catalog,
        reservations=ckeys.reservations,
        order_id=order_id,
        session_id=SESSION,
        lines=lines,
        now_ms=1_000,
        tombstone_ttl_seconds=60,
    )


async def commit(raw_redis: Redis, ckeys: ClusterKeys, order_id: str) -> object:
    committed = await SagaCommit(raw_redis)(
        reservation_key=ckeys.reservation(order_id),
        stock=ckeys.stock,
        reserved=ckeys.reserved,
        stream=ckeys.orders_stream,
        reservations=ckeys.reservations,
        order_id=order_id,
        now_ms=2_000,
        stream_maxlen=100,
        request_id="req",
        keep_seconds=60,
    )
    assert committed.confirmed  # no replica wanted
    return committed.result


async def release(raw_redis: Redis, ckeys: ClusterKeys, order_id: str) -> object:
    return await SagaRelease(raw_redis)(
        reservation_key=ckeys.reservation(order_id),
        reserved=ckeys.reserved,
        reservations=ckeys.reservations,
        order_id=order_id,
        now_ms=3_000,
        keep_seconds=60,
    )


async def test_saga_reserve_commit_and_release_give_every_result(
    raw_redis: Redis, ckeys: ClusterKeys
) -> None:
    await put(raw_redis, ckeys, "mug", on_hand=3, price_cents=100)
    held = Reservation((PricedLine("mug", 2, 100),), 200)

    assert await reserve(raw_redis, ckeys, "short", Line("mug", 4)) == Shortage(
        (ShortLine("mug", 4, 3),)
    )
    assert await reserve(raw_redis, ckeys, "short", Line("mug", 1)) == Released()  # tombstone
    assert await reserve(raw_redis, ckeys, "o1", Line("mug", 2)) == SagaReserved(held)
    assert await reserve(raw_redis, ckeys, "o1", Line("mug", 2)) == SagaReserved(held)  # again
    assert await raw_redis.hget(ckeys.reserved, "mug") == b"2"
    # Indexed while held (a tombstone is not), by the time reserved.
    assert await raw_redis.zrange(ckeys.reservations, 0, -1, withscores=True) == [(b"o1", 1000)]

    assert await commit(raw_redis, ckeys, "o1") == Committed(held)
    assert await raw_redis.zcard(ckeys.reservations) == 0
    assert await commit(raw_redis, ckeys, "o1") == Committed(held)  # idempotent
    assert await reserve(raw_redis, ckeys, "o1", Line("mug", 2)) == Committed(held)
    assert await release(raw_redis, ckeys, "o1") == Committed(held)
    assert await raw_redis.hget(ckeys.stock, "mug") == b"1"
    assert await raw_redis.xlen(ckeys.orders_stream) == 1

    assert await commit(raw_redis, ckeys, "never") == Released()
    assert await reserve(raw_redis, ckeys, "o2", Line("mug", 1)) == SagaReserved(
        Reservation((PricedLine("mug", 1, 100),), 100)
    )
    await raw_redis.hset(ckeys.stock, "mug", 0)  # an admin set below the reservation
    assert await commit(raw_redis, ckeys, "o2") == OutOfStock()
    assert await raw_redis.hget(ckeys.reserved, "mug") is None
    assert await raw_redis.zcard(ckeys.reservations) == 0

    await raw_redis.hset(ckeys.stock, "mug", 5)
    assert isinstance(await reserve(raw_redis, ckeys, "o3", Line("mug", 1)), SagaReserved)
    assert await raw_redis.zcard(ckeys.reservations) == 1
    assert await release(raw_redis, ckeys, "o3") == Released()
    assert await raw_redis.zcard(ckeys.reservations) == 0
    assert await release(raw_redis, ckeys, "o3") == Released()
    assert await raw_redis.hget(ckeys.reserved, "mug") is None


async def test_saga_finish_and_cancel_give_every_result(
    raw_redis: Redis, ckeys: ClusterKeys
) -> None:
    await raw_redis.hset(ckeys.cart(SESSION), mapping={"mug": 2})
    await saga_begin(raw_redis, ckeys, "o1")
    held = Reservation((PricedLine("mug", 2, 100),), 200)
    finish = SagaFinish(raw_redis)

    async def finish_o1() -> object:
        finished = await finish(
            order=ckeys.session_order(SESSION, "o1"),
            pending=ckeys.session_pending(SESSION),
            idempotency=ckeys.idempotency(SESSION, "idem"),
            order_id="o1",
            now_ms=2_000,
            response=PAID,
            response_ttl_seconds=60,
            reservation=held,
        )
        assert finished.confirmed
        return finished.result

    cancel = SagaCancel(raw_redis)

    async def cancel_o1() -> object:
        return await cancel(
            order=ckeys.session_order(SESSION, "o1"),
            pending=ckeys.session_pending(SESSION),
            cart=ckeys.cart(SESSION),
            declines=ckeys.declines(SESSION),
            idempotency=ckeys.idempotency(SESSION, "idem"),
            cancellation=cancellation("o1", "expired", SOLD_OUT),
        )

    assert await finish_o1() == Finished()
    order = await raw_redis.hgetall(ckeys.session_order(SESSION, "o1"))
    assert (order[b"status"], orjson.loads(order[b"items"])) == (
        b"paid",
        [{"id": "mug", "quantity": 2, "price_cents": 100}],
    )
    assert await raw_redis.get(ckeys.idempotency(SESSION, "idem")) == (
        FINGERPRINT.encode() + b"|" + PAID.remembered()
    )
    assert await finish_o1() == Finished()  # idempotent
    assert await cancel_o1() == NotPending()  # a paid order is never cancelled

    await raw_redis.hset(ckeys.cart(SESSION), mapping={"cap": 1})
    await raw_redis.delete(ckeys.idempotency(SESSION, "idem"))
    await saga_begin(raw_redis, ckeys, "o2")
    cancelled = await SagaCancel(raw_redis)(
        order=ckeys.session_order(SESSION, "o2"),
        pending=ckeys.session_pending(SESSION),
        cart=ckeys.cart(SESSION),
        declines=ckeys.declines(SESSION),
        idempotency=ckeys.idempotency(SESSION, "idem"),
        cancellation=cancellation("o2", "error", None),
    )
    assert cancelled == Cancelled((), None)
    assert await raw_redis.exists(ckeys.idempotency(SESSION, "idem")) == 0  # forgotten
    assert await raw_redis.hgetall(ckeys.cart(SESSION)) == {b"cap": b"1"}
    await raw_redis.hset(ckeys.session_order(SESSION, "o3"), "status", "expired")
    finished = await finish(
        order=ckeys.session_order(SESSION, "o3"),
        pending=ckeys.session_pending(SESSION),
        idempotency=None,
        order_id="o3",
        now_ms=2_000,
        response=PAID,
        response_ttl_seconds=60,
        reservation=held,
    )
    assert finished.result == NotPending()
