"""`OrderStore`: checkout as two atomic steps around the payment, and the orders it makes.

1. `begin_checkout.lua` reserves the stock of every line and turns the cart into a pending
   order, or changes nothing (empty cart, not enough stock, a repeated Idempotency-Key, a
   session whose payments were declined too often lately).
2. The payment processor is called; no Redis work is held open meanwhile.
3. `complete_checkout.lua` takes the units from what is on hand, marks the order paid and
   appends it to the orders stream, or `cancel_checkout.lua` gives the reservation back and
   puts the lines back into the cart (within the cart's caps).

**Stock is conserved under any interleaving.** Per item, Redis holds the units *on hand*
(every unit not sold yet; the only count an admin sets) and the units *reserved* by pending
checkouts; what can be bought is on hand minus reserved. A reservation and its release
change only the reserved count, a payment moves units out of on hand, and an admin's set
changes only on hand: so a checkout that began before an admin set and is declined after it
cannot add its units to the new value (it used to: `HINCRBY` onto the admin's figure). If an
admin set on hand below what pending orders hold, an order whose units are no longer on hand
when its payment comes back is not paid (`out_of_stock`, 409, logged for a refund): units
are never sold that the admin said are not there. Invariants, per item: on hand >= 0,
reserved = the units of pending orders, and on hand + units paid since an admin set = that
set (`tests/cartlib/store/test_interleavings.py` checks them after random schedules).

Each step is one round trip, so a checkout costs two. A pending order whose process died
between steps is cancelled by `release_expired()` after `checkout_timeout_seconds`.

**A checkout cut off between its steps is finished by a retry of its Idempotency-Key.** If
Redis fails (a failover, a restart) or the process dies after the payment was charged and
before step 3, the client gets 503 and its order stays pending. The key must then lead back
to *that* order: a retry that started a new checkout would charge the customer twice, and
one told "in progress" until the reaper gave the stock back would leave a charged customer
without an order. So step 1 records the key as `pending:<order id>`, for as long as keys are
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
meanwhile is logged likewise. A normal checkout still costs two round trips.

**Durability** (`wait_replicas` > 0, the default with Sentinel): step 3 is followed by
`WAIT wait_replicas wait_timeout_ms` on the same connection, in the same round trip
(`cartlib.store.durability`), so a paid order is acknowledged only once a replica holds it and a
failover cannot lose it. When fewer replicas confirm it, the client gets 503
(`NotReplicated`), never 200; the order stays paid on the master, and its response is
remembered for the Idempotency-Key as usual. A retry with that key then does not replay the
200 blindly: it writes the remembered response again and WAITs for that, which confirms
everything written before it, the order included. The retry gets the 200 once a replica
has it, and 503 again until then. (Without a key, the client cannot ask again: the cart is
already empty, as after any checkout.)
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import orjson
from redis.asyncio import Redis

from cartlib.store import metrics
from cartlib.store.durability import ReplicatedWrites
from cartlib.store.errors import (
    CartError,
    CheckoutExpired,
    CheckoutInProgress,
    EmptyCart,
    IdempotencyKeyReused,
    InsufficientStock,
    NotReplicated,
    OrderNotFound,
    PaymentDeclined,
    StoreError,
    StoreUnavailable,
    TooManyDeclines,
)
from cartlib.store.keys import Keys
from cartlib.store.redis import call
from cartlib.store.scripts import LuaScript, ScriptArg

THANKS = "Thanks for shopping with us!"
# How long an order cancelled after its payment may have gone through (the reaper's, or out
# of stock when paid) is kept, to reconcile it with the payment provider. A declined one is
# deleted at once: nothing was charged and its client never learns its id.
_CANCELLED_ORDER_TTL_SECONDS = 24 * 3600
# An Idempotency-Key record while its checkout is unfinished: b"pending:<order id>".
_PENDING = b"pending:"
# A record starts with the fingerprint of its request: 32 hex digits and "|".
_FINGERPRINT_LENGTH = 32

logger = logging.getLogger("storefront.orders")


@dataclass(frozen=True, slots=True)
class PaymentResult:
    approved: bool
    reason: str = ""


class PaymentProcessor(Protocol):
    """What checkout needs of a payment provider. `reference` is unique per order, so a
    provider that deduplicates on it never charges an order twice."""

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult: ...


class PaymentUnavailable(Exception):
    """Raised by a processor that could not reach its provider; nothing was charged."""


@dataclass(frozen=True, slots=True)
class CheckoutResponse:
    """A finished checkout as the HTTP response to send (and to replay for its key)."""

    status_code: int
    body: bytes

    def remembered(self) -> bytes:
        return orjson.dumps({"status_code": self.status_code, "body": orjson.Fragment(self.body)})

    @classmethod
    def recall(cls, remembered: bytes) -> CheckoutResponse:
        record = orjson.loads(remembered)
        return cls(record["status_code"], orjson.dumps(record["body"]))


def error_body(error: CartError) -> bytes:
    return orjson.dumps({"detail": error.detail})


# What an Idempotency-Key answers once the reaper has cancelled its checkout.
_EXPIRED = CheckoutResponse(409, error_body(CheckoutExpired()))
# What a paid checkout answers when an admin lowered the stock below it meanwhile.
_SOLD_OUT_WHILE_PAYING = InsufficientStock(
    "Not enough stock for this order any more: the shop's stock changed while the payment "
    "was processed. Your items are back in the cart and the payment will be refunded"
)
_OUT_OF_STOCK = CheckoutResponse(409, error_body(_SOLD_OUT_WHILE_PAYING))


def fingerprint(payment_token: str) -> str:
    """What an Idempotency-Key is bound to: the request's payment (the body's one field)."""
    return hashlib.sha256(b"payment.token=" + payment_token.encode()).hexdigest()[
        :_FINGERPRINT_LENGTH
    ]


def split_record(record: bytes) -> tuple[bytes | None, bytes]:
    """An Idempotency-Key record as (its request's fingerprint, what follows it). A record
    of the version before fingerprints has none."""
    head, separator, rest = record.partition(b"|")
    if separator and len(head) == _FINGERPRINT_LENGTH and head.isalnum():
        return head, rest
    return None, record


@dataclass(slots=True)
class _Attempt:
    """What `checkout()` counts: a repeated key (a replay or a resume), the paid total."""

    repeated_key: bool = False
    total_cents: int = 0


@dataclass(frozen=True, slots=True)
class _Payment:
    """One checkout request's payment, for a new order or a resumed one."""

    session_id: str
    token: str
    processor: PaymentProcessor
    idempotency: str  # the Redis key of its Idempotency-Key's record; "" without one
    request_id: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token)


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
        self._cart_ttl_ms = cart_ttl_seconds * 1000
        self._idempotency_ttl = idempotency_ttl_seconds
        self._timeout_ms = checkout_timeout_seconds * 1000
        self._stream_maxlen = stream_maxlen
        self._max_quantity = max_quantity
        self._max_lines = max_lines
        self._max_declines = max_declines
        self._decline_window_ms = decline_window_seconds * 1000
        self._begin = LuaScript(redis, "begin_checkout", prelude="stock_prelude")
        self._complete = LuaScript(redis, "complete_checkout", prelude="checkout_prelude")
        self._cancel = LuaScript(redis, "cancel_checkout", prelude="checkout_prelude")
        self._resume = LuaScript(redis, "resume_checkout")
        self._replicated = (
            ReplicatedWrites(redis, replicas=wait_replicas, timeout_ms=wait_timeout_ms)
            if wait_replicas > 0
            else None
        )
        self._complete_replicated = (
            self._replicated.script("complete_checkout", prelude="checkout_prelude")
            if self._replicated
            else None
        )

    async def checkout(
        self,
        session_id: str,
        *,
        payment_token: str,
        processor: PaymentProcessor,
        idempotency_key: str | None = None,
        request_id: str = "",
    ) -> CheckoutResponse:
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
        attempt = _Attempt()
        try:
            outcome, response = await self._checkout(
                session_id,
                payment_token=payment_token,
                processor=processor,
                idempotency_key=idempotency_key,
                request_id=request_id,
                attempt=attempt,
            )
        except EmptyCart:
            metrics.CHECKOUTS_BY_OUTCOME["empty"].inc()
            raise
        except TooManyDeclines:
            raise  # refused before it started: not a checkout
        except Exception:
            if attempt.repeated_key:
                metrics.CHECKOUT_REPLAYS.inc()
            else:
                metrics.CHECKOUTS_BY_OUTCOME["error"].inc()
            raise
        if attempt.repeated_key:
            metrics.CHECKOUT_REPLAYS.inc()
        else:
            metrics.CHECKOUTS_BY_OUTCOME[outcome].inc()
            if outcome == "paid":
                metrics.ORDER_VALUE.observe(attempt.total_cents)
        return response

    async def _checkout(
        self,
        session_id: str,
        *,
        payment_token: str,
        processor: PaymentProcessor,
        idempotency_key: str | None,
        request_id: str,
        attempt: _Attempt,
    ) -> tuple[str, CheckoutResponse]:
        """The checkout, and its outcome for the metrics."""
        order_id = uuid.uuid4().hex
        idempotency = self._keys.idempotency(session_id, idempotency_key) if idempotency_key else ""
        keys = self._keys
        payment = _Payment(session_id, payment_token, processor, idempotency, request_id)
        status, *reply = await self._begin(
            [
                keys.cart(session_id),
                keys.stock,
                keys.reserved,
                keys.catalog,
                keys.order(order_id),
                keys.pending_checkouts,
                keys.declines(session_id),
                *([idempotency] if idempotency else []),
            ],
            [
                order_id,
                session_id,
                _now_ms(),
                self._idempotency_ttl * 1000,
                payment.fingerprint,
                self._max_declines,
            ],
        )
        if status == b"replay":
            attempt.repeated_key = True
            return await self._repeated_key(payment, reply[0])
        if status == b"empty":
            raise EmptyCart()
        if status == b"declined_too_often":
            raise TooManyDeclines(max(1, -(-int(reply[0]) // 1000)))
        if status == b"insufficient_stock":
            # Not remembered for the key: nothing was reserved or charged (see checkout()).
            return "insufficient_stock", _insufficient_stock(reply[0])
        if status != b"reserved":
            raise StoreError(f"unexpected reply from begin_checkout: {status!r}")
        attempt.total_cents = int(reply[1])
        return await self._pay(payment, order_id, reply[0], attempt.total_cents)

    async def _repeated_key(self, payment: _Payment, record: bytes) -> tuple[str, CheckoutResponse]:
        """Answer a key seen before, whose record is `record`: refuse another request on it,
        finish its checkout if it was cut off ('pending:<order id>'), else replay the
        remembered response."""
        recorded_for, state = split_record(record)
        if recorded_for is not None and recorded_for != payment.fingerprint.encode():
            raise IdempotencyKeyReused()
        if state.startswith(_PENDING):
            order_id = state[len(_PENDING) :].decode()
            status, *reply = await self._resume(
                [payment.idempotency, self._order_key(payment.session_id, order_id)], [record]
            )
            if status == b"pending":
                logger.info("finishing a checkout cut off mid-way", extra={"order_id": order_id})
                return await self._pay(payment, order_id, reply[0], int(reply[1]))
            if status == b"forgotten":
                raise StoreUnavailable(
                    "The payment service was unavailable and nothing was charged; try again"
                )
            if status != b"replay":  # the order is no longer pending, its record not updated
                raise CheckoutExpired()
            record = reply[0]  # finished since begin_checkout read the record
            state = split_record(record)[1]
        if state.startswith(b"pending"):
            # 'pending' without its order, left by the version before resumable checkouts
            # (for at most its checkout timeout); or a new checkout took the key meanwhile.
            raise CheckoutInProgress()
        replayed = CheckoutResponse.recall(state)
        if replayed.status_code == 200 and self._replicated is not None:
            await _confirm_replicated(self._replicated, payment.idempotency, record)
        return "replay", replayed

    async def _pay(
        self, payment: _Payment, order_id: str, lines: bytes, total_cents: int
    ) -> tuple[str, CheckoutResponse]:
        """Charge the pending order `order_id` (its id is the payment reference, so a retry
        that pays it again is never charged twice), then complete or cancel it."""
        keys = self._keys
        session_id, idempotency = payment.session_id, payment.idempotency
        try:
            result = await payment.processor.charge(
                amount_cents=total_cents, token=payment.token, reference=order_id
            )
        except PaymentUnavailable as exc:
            await self._undo(session_id, order_id, "error", idempotency, remember=None)
            raise StoreUnavailable("The payment service is unavailable; try again shortly") from exc
        if not result.approved:
            declined = PaymentDeclined(
                f"Payment declined: {result.reason}" if result.reason else None
            )
            response = CheckoutResponse(402, error_body(declined))
            cancelled = await self._undo(
                session_id, order_id, "declined", idempotency, remember=response
            )
            # As remembered: with the units that did not fit back into the cart, if any.
            return "declined", CheckoutResponse.recall(cancelled) if cancelled else response

        response = CheckoutResponse(
            200,
            orjson.dumps(
                {
                    "message": THANKS,
                    "order": _order(order_id, lines, total_cents, "paid"),
                }
            ),
        )
        complete_keys = [
            keys.order(order_id),
            keys.pending_checkouts,
            keys.orders_stream,
            keys.stock,
            keys.reserved,
            keys.cart(session_id),
            *([idempotency] if idempotency else []),
        ]
        complete_args: list[ScriptArg] = [
            order_id,
            _now_ms(),
            response.remembered(),
            self._idempotency_ttl,
            self._stream_maxlen,
            payment.request_id,
            _OUT_OF_STOCK.remembered(),
            _CANCELLED_ORDER_TTL_SECONDS,
            self._cart_ttl_ms,
            self._max_quantity,
            self._max_lines,
        ]
        if self._complete_replicated is None:
            outcome, *reply = await self._complete(complete_keys, complete_args)
        else:
            (outcome, *reply), acknowledged = await self._complete_replicated(
                complete_keys, complete_args
            )
            if outcome == b"paid" and acknowledged < self._complete_replicated.replicas:
                metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
                raise NotReplicated()
        if outcome == b"out_of_stock":
            # An admin lowered what is on hand below this order while it was being paid.
            logger.warning(
                "payment approved for an order no longer in stock: reconcile it with the "
                "payment provider (refund)",
                extra={"order_id": order_id, "payment_reference": order_id},
            )
            _log_left_out(session_id, order_id, reply[0])
            return "insufficient_stock", CheckoutResponse.recall(reply[1])
        if outcome != b"paid":
            # The reaper cancelled the order while it was being paid (a payment slower than
            # the checkout timeout, a retry just before it): the money must be given back.
            logger.warning(
                "payment approved for a cancelled order: reconcile it with the payment "
                "provider (refund)",
                extra={"order_id": order_id, "payment_reference": order_id},
            )
            raise CheckoutExpired()
        return "paid", response

    async def aclose(self) -> None:
        """Close what the store opened besides the shared client (nothing standalone)."""

    def _order_key(self, session_id: str, order_id: str) -> str:
        """The order's hash (cluster mode puts it in its session's slot)."""
        return self._keys.order(order_id)

    async def get_json(self, session_id: str, order_id: str) -> bytes:
        """An order of this session; `OrderNotFound` for any other session's order."""
        fields: dict[bytes, bytes] = await call(
            "HGETALL", self._redis.hgetall(self._order_key(session_id, order_id))
        )
        if fields.get(b"session_id") != session_id.encode():
            raise OrderNotFound()
        return orjson.dumps(
            _order(
                order_id, fields[b"items"], int(fields[b"total_cents"]), fields[b"status"].decode()
            )
        )

    async def release_expired(self, now_ms: int | None = None) -> int:
        """Cancel checkouts that have held stock past the timeout; returns how many.

        Whether a cut-off payment went through cannot be known here, so each cancelled order
        is logged (a warning with its id, the payment reference) and counted in
        `cartlib_checkouts_expired_total`. Its Idempotency-Key, if any, then answers 409
        `CheckoutExpired`: a retry never starts a second checkout on that key.
        """
        deadline = (now_ms if now_ms is not None else _now_ms()) - self._timeout_ms
        stale: list[bytes] = await call(
            "ZRANGEBYSCORE",
            self._redis.zrangebyscore(
                self._keys.pending_checkouts, "-inf", deadline, start=0, num=100
            ),
        )
        released = 0
        for raw_id in stale:
            order_id = raw_id.decode()
            session_id, idempotency = await call(
                "HMGET",
                self._redis.hmget(self._keys.order(order_id), ["session_id", "idempotency_key"]),
            )
            if session_id is None:  # the order is gone: only the index entry is left
                await call("ZREM", self._redis.zrem(self._keys.pending_checkouts, order_id))
                continue
            cancelled = await self._undo(
                session_id.decode(),
                order_id,
                "expired",
                idempotency.decode() if idempotency else "",
                remember=_EXPIRED,
            )
            if cancelled is not None:
                metrics.CHECKOUTS_EXPIRED.inc()
                logger.warning(
                    "cancelled a checkout past its timeout; its payment may have gone "
                    "through: reconcile it with the payment provider",
                    extra={"order_id": order_id, "payment_reference": order_id},
                )
            released += cancelled is not None
        return released

    async def _undo(
        self,
        session_id: str,
        order_id: str,
        status: str,
        idempotency: str,
        *,
        remember: CheckoutResponse | None,
    ) -> bytes | None:
        """Cancel a pending order (`cancel_checkout.lua`): the response remembered for it
        (`remember`, with what did not fit back into the cart; b"" for none), or None if it
        was not pending."""
        keys = self._keys
        outcome, *reply = await self._cancel(
            [
                keys.order(order_id),
                keys.pending_checkouts,
                keys.stock,
                keys.reserved,
                keys.cart(session_id),
                keys.declines(session_id),
                *([idempotency] if idempotency else []),
            ],
            [
                order_id,
                status,
                self._cart_ttl_ms,
                remember.remembered() if remember else "",
                self._idempotency_ttl,
                _CANCELLED_ORDER_TTL_SECONDS if status == "expired" else 0,
                self._max_quantity,
                self._max_lines,
                self._decline_window_ms,
            ],
        )
        if outcome != b"cancelled":
            return None
        _log_left_out(session_id, order_id, reply[0])
        remembered: bytes = reply[1]
        return remembered


class _ReplayNotReplicated(NotReplicated):
    """A replayed paid response whose order still lacks replicas (counted as a replay)."""


async def _confirm_replicated(
    replicated: ReplicatedWrites, idempotency_key: str, remembered: bytes
) -> None:
    """Raise `NotReplicated` unless enough replicas hold the remembered paid response."""
    if await replicated.rewrite(idempotency_key, remembered) < replicated.replicas:
        metrics.WAIT_SHORTFALLS_BY_STEP["replay"].inc()
        raise _ReplayNotReplicated()


def _log_left_out(session_id: str, order_id: str, left_out: bytes) -> None:
    """Log the units of a cancelled order that did not fit back into its cart (its caps)."""
    if left_out != b"[]":
        logger.info(
            "a cancelled checkout's lines did not all fit back into the cart (its caps)",
            extra={"session_id": session_id, "order_id": order_id, "left_out": left_out.decode()},
        )


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _order(order_id: str, lines: bytes, total_cents: int, status: str) -> dict[str, object]:
    return {
        "id": order_id,
        "items": orjson.Fragment(lines),
        "total_cents": total_cents,
        "status": status,
    }


def _insufficient_stock(shortages_json: bytes) -> CheckoutResponse:
    shortages = orjson.loads(shortages_json)
    described = ", ".join(
        f"{line['id']} (requested {line['requested']}, available {line['available']})"
        for line in shortages
    )
    error = InsufficientStock(f"Not enough stock for: {described}")
    return CheckoutResponse(409, error_body(error))
