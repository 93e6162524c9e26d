"""The checkout state machine, shared by standalone/Sentinel and cluster mode.

Every checkout goes through the same states; what differs is how many Redis scripts each
transition takes, which a `Transport` strategy hides (docs/design.md, docs/redis-cluster.md):

    (cart) --begin--> PENDING --reserve--> RESERVED --charge--> CHARGED --settle--> PAID
                         |                     |                   |
                         |     short/released  |     declined,     |  out of stock (admin),
                         +---------------------+---- unavailable --+---released (reaper)
                                               v                   v
                                  CANCELLED (release, then cancel: cart restored)

* **begin**: the cart becomes a pending order (refused: a key seen before, a session over
  its decline limit, an empty cart). Standalone reserves in the same script, so its
  **reserve** is a no-op; cluster reserves in the stock slot (saga step B).
* **charge**: the payment processor, with the order id as the payment reference.
* **settle**: standalone sells, streams and marks paid in one script; cluster sells in the
  stock slot (C), then marks paid in the session slot (D).
* **release** and **cancel** compensate: the reservation given back, then the order
  cancelled and its lines restored (standalone does both in one script).

A retry of an Idempotency-Key whose record names an unfinished order **resumes** it at
PENDING (every step is idempotent by order id); one whose checkout ended replays its
response. The reaper (`release_expired`) ends orders pending past the timeout: cancelled,
or paid if their units were sold (cluster: the process died between C and D).

With replicas to wait for, a pending order is paid only once a replica holds it
(`PendingOrder.confirmed`; cluster: the WAIT after step A, or after the resume): a new one
that no replica confirmed is cancelled before the stock is touched, a resumed one is left
pending; both answer 503 `NotReplicated`.

`checkout()` returns a `CheckoutOutcome`; the metrics are recorded from it, once.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass
from typing import Protocol

import orjson

from cartlib.store import metrics
from cartlib.store.errors import (
    CartError,
    CheckoutExpired,
    CheckoutInProgress,
    EmptyCart,
    IdempotencyKeyReused,
    InsufficientStock,
    NotReplicated,
    PaymentDeclined,
    StoreError,
    StoreUnavailable,
    TooManyDeclines,
)
from cartlib.store.scripts.resume_checkout import Forgotten, Gone
from cartlib.store.scripts.shared import (
    FINGERPRINT_LENGTH,
    Cancelled,
    Committed,
    DeclinedTooOften,
    Empty,
    FinishedCheckout,
    InFlight,
    KeyRecord,
    Line,
    NotPending,
    Released,
    Replay,
    Reservation,
    Shortage,
)

THANKS = "Thanks for shopping with us!"

logger = logging.getLogger("storefront.orders")


# --- the payment processor ---------------------------------------------------------------


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


# --- what a checkout is given and what it ends with ----------------------------------------


def fingerprint(payment_token: str) -> str:
    """What an Idempotency-Key is bound to: the request's payment (the body's one field)."""
    digest = hashlib.sha256(b"payment.token=" + payment_token.encode()).hexdigest()
    return digest[:FINGERPRINT_LENGTH]


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    """One checkout request's payment, for a new order or a resumed one."""

    session_id: str
    token: str
    processor: PaymentProcessor
    idempotency: str | None  # the Redis key of its Idempotency-Key's record
    request_id: str

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.token)


@dataclass(frozen=True, slots=True)
class OrderRef:
    """A pending order, as the session-side steps name it."""

    session_id: str
    order_id: str
    idempotency: str | None


@dataclass(frozen=True, slots=True)
class PendingOrder:
    """An order begun (or resumed): its lines, and its reservation if it holds one already
    (standalone reserves at begin; cluster at the reserve step). `confirmed`: the order is
    on enough replicas to be paid (cluster: step A was WAITed for, as it must be before the
    stock slot sells its units; standalone: always, its sale's WAIT confirms it)."""

    order_id: str
    lines: tuple[Line, ...]
    reservation: Reservation | None
    confirmed: bool = True


@dataclass(frozen=True, slots=True)
class Paid:
    order_id: str
    total_cents: int
    response: FinishedCheckout


@dataclass(frozen=True, slots=True)
class Declined:
    response: FinishedCheckout


@dataclass(frozen=True, slots=True)
class Short:
    """Not enough stock before the payment: nothing reserved or charged, nothing remembered."""

    response: FinishedCheckout


@dataclass(frozen=True, slots=True)
class SoldOut:
    """An admin removed the units while the order was being paid: not paid (refund)."""

    response: FinishedCheckout


@dataclass(frozen=True, slots=True)
class Replayed:
    """A key whose checkout ended: its remembered response."""

    response: FinishedCheckout


CheckoutOutcome = Paid | Declined | Short | SoldOut | Replayed

# The outcome label of `cartlib_checkouts_total`.
_OUTCOME_LABEL: dict[type[CheckoutOutcome], str] = {
    Paid: "paid",
    Declined: "declined",
    Short: "insufficient_stock",
    SoldOut: "insufficient_stock",
}


def record_metrics(outcome: CheckoutOutcome, *, repeated_key: bool) -> None:
    """Count a checkout once by what its caller gets; a repeated key is a replay."""
    if repeated_key or isinstance(outcome, Replayed):
        metrics.CHECKOUT_REPLAYS.inc()
        return
    metrics.CHECKOUTS_BY_OUTCOME[_OUTCOME_LABEL[type(outcome)]].inc()
    if isinstance(outcome, Paid):
        metrics.ORDER_VALUE.observe(outcome.total_cents)


def record_failure(*, repeated_key: bool) -> None:
    """Count a checkout that raised (Redis, the payment service, an expired reservation)."""
    if repeated_key:
        metrics.CHECKOUT_REPLAYS.inc()
    else:
        metrics.CHECKOUTS_BY_OUTCOME["error"].inc()


# --- the transitions a transport makes -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Sold:
    """Settled: the units are sold and the order is paid; `confirmed`: on enough replicas."""

    confirmed: bool


@dataclass(frozen=True, slots=True)
class OutOfStock:
    """Settled as out of stock: nothing sold. `cancelled`: the order as the transport
    cancelled it in the same step, None if it is still to be cancelled."""

    cancelled: Cancelled | None


@dataclass(frozen=True, slots=True)
class StaleOrder:
    """A pending order past the timeout, found by the reaper; `ref` None: only its index
    entry is left."""

    order_id: str
    ref: OrderRef | None
    index: str  # the pending index that lists it


class Transport(Protocol):
    """The Redis steps of one mode; each is one script (or two, pipelined with WAIT)."""

    def order_key(self, session_id: str, order_id: str) -> str:
        """The hash of a session's order."""
        ...

    async def begin(
        self, request: CheckoutRequest, order_id: str
    ) -> PendingOrder | Replay | DeclinedTooOften | Empty | Shortage: ...

    async def resume(
        self, session_id: str, idempotency: str, record: KeyRecord, order_id: str
    ) -> PendingOrder | Replay | Forgotten | Gone: ...

    async def reserve(
        self, request: CheckoutRequest, order: PendingOrder
    ) -> Reservation | Shortage | Released: ...

    async def settle(
        self, ref: OrderRef, request_id: str, reservation: Reservation, response: FinishedCheckout
    ) -> Sold | OutOfStock | Released: ...

    async def finish(
        self, ref: OrderRef, reservation: Reservation, response: FinishedCheckout
    ) -> Sold: ...

    async def release(self, order_id: str) -> Released | Committed: ...

    async def cancel(
        self, ref: OrderRef, status: str, remember: FinishedCheckout | None
    ) -> Cancelled | NotPending: ...

    async def stale(self, deadline_ms: int) -> list[StaleOrder]: ...

    async def release_orphans(self, deadline_ms: int) -> int:
        """Settle the units still reserved since before `deadline_ms` for orders pending
        nowhere (given back, or sold again for a paid order); how many reservations."""
        ...

    async def forget(self, stale: StaleOrder) -> None: ...

    async def confirm(self, idempotency: str, record: KeyRecord) -> bool: ...

    async def aclose(self) -> None: ...


# --- the answers the machine gives -------------------------------------------------------


def error_body(error: CartError) -> bytes:
    return orjson.dumps({"detail": error.detail})


# The answers a checkout remembers for its key carry the status they are sent with (the
# record's format); the web layer maps the errors it raises itself.
_PAID_STATUS, _DECLINED_STATUS, _CONFLICT_STATUS = 200, 402, 409


def _answer(status: int, error: CartError) -> FinishedCheckout:
    return FinishedCheckout(status, error_body(error))


# What an Idempotency-Key answers once the reaper has cancelled its checkout.
EXPIRED = _answer(_CONFLICT_STATUS, CheckoutExpired())
# What a paid checkout answers when an admin lowered the stock below it meanwhile.
OUT_OF_STOCK = _answer(
    _CONFLICT_STATUS,
    InsufficientStock(
        "Not enough stock for this order any more: the shop's stock changed while the payment "
        "was processed. Your items are back in the cart and the payment will be refunded"
    ),
)


def order_json(order_id: str, items: object, total_cents: int, status: str) -> dict[str, object]:
    return {"id": order_id, "items": items, "total_cents": total_cents, "status": status}


def paid_response(order_id: str, reservation: Reservation) -> FinishedCheckout:
    items: list[object] = [
        {"id": line.id, "quantity": line.quantity, "price_cents": line.price_cents}
        for line in reservation.lines
    ]
    order = order_json(order_id, items, reservation.total_cents, "paid")
    return FinishedCheckout(_PAID_STATUS, orjson.dumps({"message": THANKS, "order": order}))


def shortage_response(shortage: Shortage) -> FinishedCheckout:
    described = ", ".join(
        f"{line.id} (requested {line.requested}, available {line.available})"
        for line in shortage.lines
    )
    return _answer(_CONFLICT_STATUS, InsufficientStock(f"Not enough stock for: {described}"))


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def _warn_refund(message: str, order_id: str) -> None:
    logger.warning(message, extra={"order_id": order_id, "payment_reference": order_id})


# --- the machine ------------------------------------------------------------------------------


class CheckoutFlow:
    """Runs checkouts and the reaper over one `Transport`.

    `timeout_ms`: how long a checkout may stay pending before the reaper ends it.
    """

    def __init__(self, transport: Transport, *, timeout_ms: int) -> None:
        self.transport = transport
        self._timeout_ms = timeout_ms

    async def checkout(self, request: CheckoutRequest) -> CheckoutOutcome:
        """Order everything in the session's cart, or say why not (see `OrderStore.checkout`).

        Raises `EmptyCart` (counted), `TooManyDeclines` (refused before it started: not a
        checkout, not counted), and whatever a later step raises (counted as an error, or as
        a replay for a repeated key).
        """
        try:
            begun = await self.transport.begin(request, uuid.uuid4().hex)
        except Exception:
            record_failure(repeated_key=False)
            raise
        if isinstance(begun, Empty):
            metrics.CHECKOUTS_BY_OUTCOME["empty"].inc()
            raise EmptyCart()
        if isinstance(begun, DeclinedTooOften):
            raise TooManyDeclines(max(1, -(-begun.retry_after_ms // 1000)))
        repeated_key = isinstance(begun, Replay)
        try:
            outcome: CheckoutOutcome
            if isinstance(begun, Replay):
                outcome = await self._repeated_key(request, begun.record)
            elif isinstance(begun, Shortage):
                # Not remembered for the key: nothing was reserved or charged.
                outcome = Short(shortage_response(begun))
            elif not begun.confirmed:
                # No replica holds the new order: a failover could lose it after its units
                # are sold (a sale and a charge for an order that no longer exists, and a
                # retry that orders the cart again). Undone before the stock is touched.
                metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
                ref = OrderRef(request.session_id, begun.order_id, request.idempotency)
                await self._cancel(ref, "error", None)
                raise NotReplicated()
            else:
                outcome = await self._pay(request, begun)
        except Exception:
            record_failure(repeated_key=repeated_key)
            raise
        record_metrics(outcome, repeated_key=repeated_key)
        return outcome

    async def _repeated_key(self, request: CheckoutRequest, record: KeyRecord) -> CheckoutOutcome:
        """A key seen before: refuse another request on it, resume its checkout if it is
        unfinished, else replay the remembered response."""
        if record.fingerprint != request.fingerprint:
            raise IdempotencyKeyReused()
        if request.idempotency is None:  # a record is found only for a key
            raise StoreError("a replayed checkout without an Idempotency-Key")
        if isinstance(record.state, InFlight):
            order_id = record.state.order_id
            resumed = await self.transport.resume(
                request.session_id, request.idempotency, record, order_id
            )
            if isinstance(resumed, PendingOrder):
                if not resumed.confirmed:
                    # As for a new order: not paid before a replica holds it. It stays
                    # pending, for another retry or the reaper.
                    metrics.WAIT_SHORTFALLS_BY_STEP["replay"].inc()
                    raise NotReplicated()
                logger.info("finishing a checkout cut off mid-way", extra={"order_id": order_id})
                return await self._pay(request, resumed)
            if isinstance(resumed, Forgotten):
                raise StoreUnavailable(
                    "The payment service was unavailable and nothing was charged; try again"
                )
            if isinstance(resumed, Gone):  # no longer pending, its record not updated
                raise CheckoutExpired()
            record = resumed.record  # finished since begin read the record
            if isinstance(record.state, InFlight):  # a new checkout took the key meanwhile
                raise CheckoutInProgress()
        replayed = record.state
        if replayed.status_code == _PAID_STATUS and not await self.transport.confirm(
            request.idempotency, record
        ):
            metrics.WAIT_SHORTFALLS_BY_STEP["replay"].inc()
            raise NotReplicated()
        return Replayed(replayed)

    async def _pay(self, request: CheckoutRequest, order: PendingOrder) -> CheckoutOutcome:
        """PENDING to PAID, or compensated: reserve (a no-op if it was), charge with the
        order id as the reference (a retry that pays again is never charged twice), settle."""
        ref = OrderRef(request.session_id, order.order_id, request.idempotency)
        reserved = await self.transport.reserve(request, order)
        if isinstance(reserved, Shortage):
            await self._cancel(ref, "insufficient_stock", None)
            return Short(shortage_response(reserved))
        if isinstance(reserved, Released):  # the reaper gave this order up
            await self._cancel(ref, "expired", EXPIRED)
            raise CheckoutExpired()
        try:
            result = await request.processor.charge(
                amount_cents=reserved.total_cents, token=request.token, reference=order.order_id
            )
        except PaymentUnavailable as exc:
            await self._give_back(ref, "error", None)
            raise StoreUnavailable("The payment service is unavailable; try again shortly") from exc
        if not result.approved:
            response = _answer(
                _DECLINED_STATUS,
                PaymentDeclined(f"Payment declined: {result.reason}" if result.reason else None),
            )
            cancelled = await self._give_back(ref, "declined", response)
            # As remembered: with the units that did not fit back into the cart, if any.
            return Declined(cancelled.remembered or response if cancelled else response)

        response = paid_response(order.order_id, reserved)
        settled = await self.transport.settle(ref, request.request_id, reserved, response)
        if isinstance(settled, Sold):
            if not settled.confirmed:
                # Not on a replica yet: a failover could undo it. A retry of the key (or the
                # reaper) finishes it and confirms it again.
                metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
                raise NotReplicated()
            return Paid(order.order_id, reserved.total_cents, response)
        if isinstance(settled, OutOfStock):
            _warn_refund(
                "payment approved for an order no longer in stock: reconcile it with the "
                "payment provider (refund)",
                order.order_id,
            )
            cancelled = settled.cancelled
            if cancelled is None:
                cancelled = await self._cancel(ref, "out_of_stock", OUT_OF_STOCK)
            else:
                _log_left_out(ref, cancelled)
            return SoldOut(cancelled.remembered or OUT_OF_STOCK if cancelled else OUT_OF_STOCK)
        # The reaper cancelled the order while it was being paid (a payment slower than the
        # checkout timeout, a retry just before it): the money must be given back.
        _warn_refund(
            "payment approved for a cancelled order: reconcile it with the payment provider "
            "(refund)",
            order.order_id,
        )
        await self._cancel(ref, "expired", EXPIRED)
        raise CheckoutExpired()

    async def _give_back(
        self, ref: OrderRef, status: str, remember: FinishedCheckout | None
    ) -> Cancelled | None:
        """Compensate a reserved order: release, then cancel."""
        if isinstance(await self.transport.release(ref.order_id), Committed):
            raise StoreError("a reservation was sold before its payment was approved")
        return await self._cancel(ref, status, remember)

    async def _cancel(
        self, ref: OrderRef, status: str, remember: FinishedCheckout | None
    ) -> Cancelled | None:
        cancelled = await self.transport.cancel(ref, status, remember)
        if isinstance(cancelled, NotPending):
            return None
        _log_left_out(ref, cancelled)
        return cancelled

    async def release_expired(self, now: int | None = None) -> int:
        """End the checkouts pending past the timeout; returns how many.

        The stock side is released first: if the order was sold (cluster: the process
        stopped between settling's two steps) it is finished as paid; otherwise it is
        cancelled and its cart restored, its key answering 409 `CheckoutExpired`. Whether a
        cut-off payment went through cannot be known here, so each cancelled order is logged
        (a warning naming the payment reference) and counted in
        `cartlib_checkouts_expired_total`. Then the units still reserved past the timeout for
        orders pending nowhere are settled (cluster: a release, or with no replica waited for
        a sale, lost in a failover).
        """
        deadline = (now if now is not None else now_ms()) - self._timeout_ms
        ended = 0
        for stale in await self.transport.stale(deadline):
            if stale.ref is None:  # the order is gone: only the index entry is left
                await self.transport.forget(stale)
                continue
            ended += await self._reap(stale.ref)
        await self.transport.release_orphans(deadline)
        return ended

    async def _reap(self, ref: OrderRef) -> int:
        released = await self.transport.release(ref.order_id)
        if isinstance(released, Committed):
            logger.warning(
                "finished a paid checkout cut off before its last step",
                extra={"order_id": ref.order_id},
            )
            response = paid_response(ref.order_id, released.reservation)
            finished = await self.transport.finish(ref, released.reservation, response)
            if not finished.confirmed:
                metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
                raise NotReplicated()
            return 1
        if await self._cancel(ref, "expired", EXPIRED) is None:
            return 0
        metrics.CHECKOUTS_EXPIRED.inc()
        _warn_refund(
            "cancelled a checkout past its timeout; its payment may have gone through: "
            "reconcile it with the payment provider",
            ref.order_id,
        )
        return 1


def _log_left_out(ref: OrderRef, cancelled: Cancelled) -> None:
    """Log the units of a cancelled order that did not fit back into its cart (its caps)."""
    if cancelled.left_out:
        left_out = orjson.dumps(
            [{"id": line.id, "quantity": line.quantity} for line in cancelled.left_out]
        ).decode()
        logger.info(
            "a cancelled checkout's lines did not all fit back into the cart (its caps)",
            extra={"session_id": ref.session_id, "order_id": ref.order_id, "left_out": left_out},
        )
