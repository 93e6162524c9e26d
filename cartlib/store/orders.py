"""`OrderStore`: checkouts and the orders they make, standalone and Sentinel mode.

The checkout's states and transitions are `cartlib.store.checkout_flow`; here is the standalone
`Transport`: two atomic steps around the payment, so a checkout costs two round trips.

1. `begin_checkout.lua` reserves the stock of every line and turns the cart into a pending
   order, or changes nothing (empty cart, not enough stock, a repeated Idempotency-Key, a
   session whose payments were declined too often lately). The flow's *reserve* step is
   therefore a no-op here.
2. The payment processor is called; no Redis work is held open meanwhile.
3. `complete_checkout.lua` takes the units from what is on hand, marks the order paid and
   appends it to the orders stream (the flow's *settle*), or `cancel_checkout.lua` gives
   the reservation back and puts the lines back into the cart, within the cart's caps (the
   flow's *release* and *cancel* in one script).

**Stock is conserved under any interleaving.** Per item, Redis holds the units *on hand*
(every unit not sold yet; the only count an admin sets) and the units *reserved* by pending
checkouts; what can be bought is on hand minus reserved. A reservation and its release
change only the reserved count, a payment moves units out of on hand, and an admin's set
changes only on hand: so a checkout that began before an admin set and is declined after it
cannot add its units to the new value. If an admin set on hand below what pending orders
hold, an order whose units are no longer on hand when its payment comes back is not paid
(`out_of_stock`, 409, logged for a refund): units are never sold that the admin said are not
there. Invariants, per item: on hand >= 0, reserved = the units of pending orders, and on
hand + units paid since an admin set = that set (`tests/cartlib/store/test_interleavings.py`
checks them after random schedules).

A pending order whose process died between steps is cancelled by `release_expired()` after
`checkout_timeout_seconds`.

**A checkout cut off between its steps is finished by a retry of its Idempotency-Key.** If
Redis fails (a failover, a restart) or the process dies after the payment was charged and
before step 3, the client gets 503 and its order stays pending. The key must then lead back
to *that* order: a retry that started a new checkout would charge the customer twice. So
step 1 records the key as `<fingerprint>|pending:<order id>`, for as long as keys are
remembered (`idempotency_ttl_seconds`, not the checkout timeout), and a retry that finds it
(`resume_checkout.lua`, one more round trip) looks at that order:

* still pending (the first attempt was cut off, or is still paying): the retry pays it
  itself, with the same payment reference (the order id), then completes or cancels it as
  a first attempt would. The `PaymentProcessor` contract makes this safe: a provider
  deduplicates on the reference, so a repeated charge returns the first result and never
  charges twice. Two attempts racing to finish one order both end with it: complete and
  cancel only change a pending order, so the first to finish decides, and complete answers
  `paid` again for an order already paid.
* finished (paid, declined): its remembered response, as for any repeated key.
* sent with another request (another payment token): 422 `IdempotencyKeyReused`. The
  record starts with a fingerprint of the request (`<sha256 prefix>|`), kept in the order
  too so that the scripts finishing it (the reaper's included) keep it.
* cancelled by the reaper: the reaper remembered 409 `CheckoutExpired` for the key ("start
  a new checkout"), never a new checkout on that key.

The reaper cannot know whether a cut-off payment went through, and stock must not be held
forever, so it still cancels after the timeout; it logs a warning with the order id (the
payment reference, to reconcile with the provider) and counts it in
`cartlib_checkouts_expired_total`. A payment approved for an order that was cancelled
meanwhile is logged likewise.

**Durability** (`wait_replicas` > 0, the default with Sentinel): step 3 is followed by
`WAIT wait_replicas wait_timeout_ms` on the same connection, in the same round trip
(`cartlib.store.durability`), so a paid order is acknowledged only once a replica holds it and a
failover cannot lose it. When fewer replicas confirm it, the client gets 503
(`NotReplicated`), never 200; the order stays paid on the master, and its response is
remembered for the Idempotency-Key as usual. A retry with that key then does not replay the
200 blindly: it writes the remembered response again and WAITs for that, which confirms
everything written before it, the order included.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from cartlib.store.checkout_flow import (
    OUT_OF_STOCK,
    CheckoutFlow,
    CheckoutRequest,
    OrderRef,
    OutOfStock,
    PaymentProcessor,
    PaymentResult,
    PaymentUnavailable,
    PendingOrder,
    Sold,
    StaleOrder,
    Transport,
    fingerprint,
    now_ms,
    order_json,
)
from cartlib.store.durability import ReplicatedWrites
from cartlib.store.errors import OrderNotFound, StoreError
from cartlib.store.keys import Keys
from cartlib.store.redis import call
from cartlib.store.scripts.begin_checkout import BeginCheckout, Reserved
from cartlib.store.scripts.cancel_checkout import CancelCheckout
from cartlib.store.scripts.complete_checkout import CompleteCheckout, Completed, SoldOut
from cartlib.store.scripts.resume_checkout import Forgotten, Gone, ResumeCheckout, StillPending
from cartlib.store.scripts.shared import (
    Cancellation,
    Cancelled,
    Committed,
    DeclinedTooOften,
    Empty,
    FinishedCheckout,
    KeyRecord,
    NotPending,
    Opening,
    Released,
    Replay,
    Reservation,
    Shortage,
    split_record,
)

__all__ = [
    "FinishedCheckout",
    "OrderStore",
    "PaymentProcessor",
    "PaymentResult",
    "PaymentUnavailable",
    "fingerprint",
    "split_record",
]

# How long an order cancelled after its payment may have gone through (the reaper's, or out
# of stock when paid) is kept, to reconcile it with the payment provider. A declined one is
# deleted at once: nothing was charged and its client never learns its id.
CANCELLED_ORDER_TTL_SECONDS = 24 * 3600
# How many stale orders of one pending index the reaper takes per pass.
REAP_BATCH = 100

# An order's hash by its id (the reaper knows the index, not the session).
OrderKey = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class CheckoutPolicy:
    """The figures every checkout step works with, whatever the mode."""

    cart_ttl_ms: int
    idempotency_ttl_seconds: int
    stream_maxlen: int
    max_quantity: int
    max_lines: int
    max_declines: int
    decline_window_ms: int

    def opening(self, request: CheckoutRequest, order_id: str) -> Opening:
        return Opening(
            order_id,
            request.session_id,
            now_ms(),
            self.idempotency_ttl_seconds * 1000,
            request.fingerprint,
            self.max_declines,
        )

    def cancellation(
        self, order_id: str, status: str, remember: FinishedCheckout | None
    ) -> Cancellation:
        kept = status in ("expired", "out_of_stock")
        return Cancellation(
            order_id,
            status,
            self.cart_ttl_ms,
            remember,
            self.idempotency_ttl_seconds,
            CANCELLED_ORDER_TTL_SECONDS if kept else 0,
            self.max_quantity,
            self.max_lines,
            self.decline_window_ms,
        )


class IndexedTransport:
    """What both transports do alike: the reaper's view of a pending index, and the WAIT
    that confirms a replayed paid response."""

    def __init__(
        self, redis: Redis, writes: ReplicatedWrites | None, *, confirm_resumed: bool
    ) -> None:
        """`confirm_resumed`: a resumed order is WAITed for before it is paid (cluster)."""
        self._redis = redis
        self._writes = writes
        self.resume_script = ResumeCheckout(redis, writes=writes if confirm_resumed else None)

    def order_key(self, session_id: str, order_id: str) -> str:
        """The order's hash."""
        raise NotImplementedError

    async def resume(
        self, session_id: str, idempotency: str, record: KeyRecord, order_id: str
    ) -> PendingOrder | Replay | Forgotten | Gone:
        resumed = await self.resume_script(
            idempotency=idempotency, order=self.order_key(session_id, order_id), record=record
        )
        result = resumed.result
        if isinstance(result, StillPending):
            return PendingOrder(order_id, result.lines, result.reservation, resumed.confirmed)
        return result

    async def stale_in(self, index: str, deadline_ms: int, order_key: OrderKey) -> list[StaleOrder]:
        """The orders of one pending index past `deadline_ms`, as their hashes name them."""
        order_ids: list[bytes] = await call(
            "ZRANGEBYSCORE",
            self._redis.zrangebyscore(index, "-inf", deadline_ms, start=0, num=REAP_BATCH),
        )
        return [await self._stale(raw.decode(), order_key, index) for raw in order_ids]

    async def _stale(self, order_id: str, order_key: OrderKey, index: str) -> StaleOrder:
        session_id, idempotency = await call(
            "HMGET", self._redis.hmget(order_key(order_id), ["session_id", "idempotency_key"])
        )
        if session_id is None:
            return StaleOrder(order_id, None, index)
        key = idempotency.decode() if idempotency else None
        return StaleOrder(order_id, OrderRef(session_id.decode(), order_id, key), index)

    async def forget(self, stale: StaleOrder) -> None:
        await call("ZREM", self._redis.zrem(stale.index, stale.order_id))

    async def confirm(self, idempotency: str, record: KeyRecord) -> bool:
        if self._writes is None:
            return True
        return await self._writes.rewrite(idempotency, record.stored) >= self._writes.replicas


class StandaloneCheckout(IndexedTransport, Transport):
    """The flow's steps on one Redis (standalone or Sentinel): begin reserves, settle
    finishes, cancel releases, each in one script."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        policy: CheckoutPolicy,
        writes: ReplicatedWrites | None,
    ) -> None:
        # Its begin needs no WAIT: the sale's, on the same node, confirms the order too.
        super().__init__(redis, writes, confirm_resumed=False)
        self._keys = keys
        self._policy = policy
        self.begin_script = BeginCheckout(redis)
        self.complete_script = CompleteCheckout(redis, writes=writes)
        self.cancel_script = CancelCheckout(redis)

    async def begin(
        self, request: CheckoutRequest, order_id: str
    ) -> PendingOrder | Replay | DeclinedTooOften | Empty | Shortage:
        keys = self._keys
        begun = await self.begin_script(
            cart=keys.cart(request.session_id),
            stock=keys.stock,
            reserved=keys.reserved,
            catalog=keys.catalog,
            order=keys.order(order_id),
            pending=keys.pending_checkouts,
            declines=keys.declines(request.session_id),
            idempotency=request.idempotency,
            opening=self._policy.opening(request, order_id),
        )
        if isinstance(begun, Reserved):
            held = begun.reservation
            return PendingOrder(order_id, held.unpriced(), held)
        return begun

    def order_key(self, session_id: str, order_id: str) -> str:
        return self._keys.order(order_id)

    async def reserve(
        self, request: CheckoutRequest, order: PendingOrder
    ) -> Reservation | Shortage | Released:
        if order.reservation is None:  # begin_checkout reserves every order it makes
            raise StoreError(f"pending order {order.order_id} holds no reservation")
        return order.reservation

    async def settle(
        self, ref: OrderRef, request_id: str, reservation: Reservation, response: FinishedCheckout
    ) -> Sold | OutOfStock | Released:
        keys, policy = self._keys, self._policy
        completed = await self.complete_script(
            order=keys.order(ref.order_id),
            pending=keys.pending_checkouts,
            stream=keys.orders_stream,
            stock=keys.stock,
            reserved=keys.reserved,
            cart=keys.cart(ref.session_id),
            idempotency=ref.idempotency,
            order_id=ref.order_id,
            now_ms=now_ms(),
            response=response,
            response_ttl_seconds=policy.idempotency_ttl_seconds,
            stream_maxlen=policy.stream_maxlen,
            request_id=request_id,
            out_of_stock=OUT_OF_STOCK,
            out_of_stock_keep_seconds=CANCELLED_ORDER_TTL_SECONDS,
            cart_ttl_ms=policy.cart_ttl_ms,
            max_quantity=policy.max_quantity,
            max_lines=policy.max_lines,
        )
        result = completed.result
        if isinstance(result, Completed):
            return Sold(completed.confirmed)
        if isinstance(result, SoldOut):
            return OutOfStock(result.cancelled)
        return Released()  # not pending: the reaper cancelled it

    async def finish(
        self, ref: OrderRef, reservation: Reservation, response: FinishedCheckout
    ) -> Sold:
        raise StoreError("a standalone order is finished when it is settled")

    async def release(self, order_id: str) -> Released | Committed:
        return Released()  # cancel_checkout gives the reservation back as it cancels

    async def cancel(
        self, ref: OrderRef, status: str, remember: FinishedCheckout | None
    ) -> Cancelled | NotPending:
        keys = self._keys
        return await self.cancel_script(
            order=keys.order(ref.order_id),
            pending=keys.pending_checkouts,
            stock=keys.stock,
            reserved=keys.reserved,
            cart=keys.cart(ref.session_id),
            declines=keys.declines(ref.session_id),
            idempotency=ref.idempotency,
            cancellation=self._policy.cancellation(ref.order_id, status, remember),
        )

    async def stale(self, deadline_ms: int) -> list[StaleOrder]:
        return await self.stale_in(self._keys.pending_checkouts, deadline_ms, self._keys.order)

    async def release_orphans(self, deadline_ms: int) -> int:
        """None: `cancel_checkout` releases and cancels in one script, so a failover loses
        both or neither (a replica holds a prefix of its master's writes)."""
        return 0

    async def aclose(self) -> None:
        """Nothing to close besides the shared client."""


class OrderStore:
    """Runs checkouts and reads orders.

    **Parameters:**

    * **redis** - the client from `create_redis()`.
    * **keys** - the key layout.
    * **cart_ttl_seconds** - the TTL a cart gets back when a checkout is undone.
    * **idempotency_ttl_seconds** - how long a response is replayed for its Idempotency-Key.
    * **checkout_timeout_seconds** - how long a checkout may hold reserved stock.
    * **stream_maxlen** - roughly how many paid orders the orders stream keeps.
    * **wait_replicas** - how many replicas must hold a paid order before it is acknowledged
      (0: no WAIT).
    * **wait_timeout_ms** - how long WAIT waits for them.
    * **max_quantity**, **max_lines** - the cart's caps, which lines restored into a cart
      after a cancelled checkout respect.
    * **max_declines** - how many declined checkouts a session may have within
      `decline_window_seconds` before it gets 429 (0: no limit).
    """

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        cart_ttl_seconds: int,
        idempotency_ttl_seconds: int,
        checkout_timeout_seconds: int,
        stream_maxlen: int,
        wait_replicas: int = 0,
        wait_timeout_ms: int = 500,
        max_quantity: int = 99,
        max_lines: int = 200,
        max_declines: int = 5,
        decline_window_seconds: int = 600,
    ) -> None:
        self._redis = redis
        self._keys = keys
        policy = CheckoutPolicy(
            cart_ttl_ms=cart_ttl_seconds * 1000,
            idempotency_ttl_seconds=idempotency_ttl_seconds,
            stream_maxlen=stream_maxlen,
            max_quantity=max_quantity,
            max_lines=max_lines,
            max_declines=max_declines,
            decline_window_ms=decline_window_seconds * 1000,
        )
        self.flow = CheckoutFlow(
            self._transport(policy, wait_replicas, wait_timeout_ms),
            timeout_ms=checkout_timeout_seconds * 1000,
        )

    def _transport(
        self, policy: CheckoutPolicy, wait_replicas: int, wait_timeout_ms: int
    ) -> Transport:
        writes = (
            ReplicatedWrites(self._redis, replicas=wait_replicas, timeout_ms=wait_timeout_ms)
            if wait_replicas > 0
            else None
        )
        return StandaloneCheckout(self._redis, self._keys, policy, writes)

    async def checkout(
        self,
        session_id: str,
        *,
        payment_token: str,
        processor: PaymentProcessor,
        idempotency_key: str | None = None,
        request_id: str = "",
    ) -> FinishedCheckout:
        """Order everything in the session's cart, or explain why not.

        Raises `EmptyCart` (nothing is remembered for it), `TooManyDeclines`,
        `IdempotencyKeyReused` for a key sent before with another payment, and
        `CheckoutExpired` for an order cancelled by the reaper while it was being paid;
        returns the 200, 402 and 409 responses. The 200 and 402 are replayed for a repeated
        key, and so is a 409 given after the payment (the stock changed meanwhile); a 409
        for stock short at the start is not remembered: nothing was reserved or charged, so
        a retry is a new attempt, which a restock may let through. A repeated key whose
        checkout was cut off mid-way finishes that checkout (see the module's docstring).

        Each checkout counts once in `cartlib_checkouts_total`, by what its caller gets:
        `paid`, `declined`, `insufficient_stock`, `empty`, or `error` for anything raised
        (Redis, the payment service, a reservation that timed out). A request with an
        Idempotency-Key seen before is not a new checkout, whether it replays a response,
        finishes a cut-off checkout or is refused for another payment: it counts in
        `cartlib_checkout_replays_total`. A 429 (`TooManyDeclines`) started nothing and is
        not counted.
        """
        request = CheckoutRequest(
            session_id,
            payment_token,
            processor,
            self._keys.idempotency(session_id, idempotency_key) if idempotency_key else None,
            request_id,
        )
        outcome = await self.flow.checkout(request)
        return outcome.response

    async def release_expired(self, now_ms: int | None = None) -> int:
        """Cancel checkouts that have held stock past the timeout; returns how many ended
        (see `CheckoutFlow.release_expired`). Its Idempotency-Key, if any, then answers 409
        `CheckoutExpired`: a retry never starts a second checkout on that key."""
        return await self.flow.release_expired(now_ms)

    async def aclose(self) -> None:
        """Close what the store opened besides the shared client."""
        await self.flow.transport.aclose()

    async def get_json(self, session_id: str, order_id: str) -> bytes:
        """An order of this session; `OrderNotFound` for any other session's order."""
        fields: dict[bytes, bytes] = await call(
            "HGETALL", self._redis.hgetall(self.flow.transport.order_key(session_id, order_id))
        )
        if fields.get(b"session_id") != session_id.encode():
            raise OrderNotFound()
        return orjson.dumps(
            order_json(
                order_id,
                orjson.Fragment(fields[b"items"]),
                int(fields[b"total_cents"]),
                fields[b"status"].decode(),
            )
        )
