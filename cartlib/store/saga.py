"""`ClusterOrderStore`: checkout on a Redis Cluster, where the cart and the stock live in
different slots, as a saga whose log is the pending order in the session's slot.

Steps (each one script on one slot, each idempotent by order id; docs/redis-cluster.md has the
states and what a crash between any two steps leaves):

A. `saga_begin` (session slot): the cart becomes a pending order, listed in its bucket's
   index of pending checkouts; the Idempotency-Key record says `pending:<order id>`.
B. `saga_reserve` (stock slot): every line reserved, all or nothing, recorded under the
   order id with its prices. Short: the order is cancelled (`saga_cancel`), the cart is
   back, 409 with the shortage.
   The payment is charged, with the order id as its reference.
C. `saga_commit` (stock slot): the units leave what is on hand and the sale is appended to
   the orders stream. Declined: `saga_release` gives the reservation back, `saga_cancel`
   the cart.
D. `saga_finish` (session slot): the order is paid, out of the index, its response
   remembered for the key.

Four round trips for a paid checkout (two per slot, because each slot's change must follow
the payment or precede it), three for a shortage. The reaper (`release_expired`) visits
every bucket's index: a pending order older than the checkout timeout is released on the
stock slot, which answers whether it was sold (step C ran: the order is finished as paid)
or not (it is cancelled and its cart restored). A retry of the Idempotency-Key resumes the
order from wherever it stopped, as standalone.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from redis.asyncio import Redis

from cartlib.store import metrics
from cartlib.store.durability import ClusterReplicatedWrites, NodeClient, ReplicatedScript
from cartlib.store.errors import (
    CheckoutExpired,
    EmptyCart,
    NotReplicated,
    PaymentDeclined,
    StoreError,
    StoreUnavailable,
    TooManyDeclines,
)
from cartlib.store.keys import SESSION_BUCKETS, ClusterKeys
from cartlib.store.orders import (
    _CANCELLED_ORDER_TTL_SECONDS,
    _EXPIRED,
    _OUT_OF_STOCK,
    _PENDING,
    THANKS,
    CheckoutResponse,
    OrderStore,
    PaymentUnavailable,
    _Attempt,
    _insufficient_stock,
    _log_left_out,
    _now_ms,
    _order,
    _Payment,
    error_body,
    split_record,
)
from cartlib.store.redis import call
from cartlib.store.scripts import LuaScript, ScriptArg

logger = logging.getLogger("storefront.orders")

# How many stale orders of one bucket the reaper takes per pass.
_REAP_BATCH = 100


class ClusterOrderStore(OrderStore):
    """`OrderStore` for cluster mode: same API and answers, the checkout run as a saga."""

    def __init__(
        self,
        redis: Redis,
        *,
        keys: ClusterKeys,
        node_client: NodeClient | None = None,
        **options: Any,
    ) -> None:
        """`node_client(host, port)`: a plain client of one master, needed when
        `wait_replicas` > 0 (see `ClusterReplicatedWrites`)."""
        super().__init__(redis, keys=keys, **options)
        self._ckeys = keys
        self._cluster_writes: ClusterReplicatedWrites | None = None
        self._begin_replicated: ReplicatedScript | None = None
        self._commit_replicated: ReplicatedScript | None = None
        self._finish_replicated: ReplicatedScript | None = None
        if self._replicated is not None:
            if node_client is None:
                raise ValueError("wait_replicas > 0 in cluster mode needs node_client")
            writes = ClusterReplicatedWrites(
                redis,
                replicas=self._replicated.replicas,
                timeout_ms=options.get("wait_timeout_ms", 500),
                node_client=node_client,
            )
            # Replays of a paid response confirm it on the owner's connection too.
            self._replicated = self._cluster_writes = writes
            self._begin_replicated = writes.script("saga_begin")
            self._commit_replicated = writes.script("saga_commit")
            self._finish_replicated = writes.script("saga_finish", prelude="checkout_prelude")
        self._saga_begin = LuaScript(redis, "saga_begin")
        self._saga_reserve = LuaScript(redis, "saga_reserve", prelude="stock_prelude")
        self._saga_commit = LuaScript(redis, "saga_commit")
        self._saga_release = LuaScript(redis, "saga_release")
        self._saga_finish = LuaScript(redis, "saga_finish", prelude="checkout_prelude")
        self._saga_cancel = LuaScript(redis, "saga_cancel", prelude="checkout_prelude")
        # How long a finished reservation (or a tombstone) answers for its order id: as long
        # as a retry of the order's Idempotency-Key may come.
        self._reservation_ttl = self._idempotency_ttl

    def _order_key(self, session_id: str, order_id: str) -> str:
        return self._ckeys.session_order(session_id, order_id)

    async def _checkout(
        self,
        session_id: str,
        *,
        payment_token: str,
        processor: Any,
        idempotency_key: str | None,
        request_id: str,
        attempt: _Attempt,
    ) -> tuple[str, CheckoutResponse]:
        keys = self._ckeys
        order_id = uuid.uuid4().hex
        idempotency = keys.idempotency(session_id, idempotency_key) if idempotency_key else ""
        payment = _Payment(session_id, payment_token, processor, idempotency, request_id)
        begin_keys = [
            keys.cart(session_id),
            keys.session_order(session_id, order_id),
            keys.session_pending(session_id),
            keys.declines(session_id),
            *([idempotency] if idempotency else []),
        ]
        begin_args: list[ScriptArg] = [
            order_id,
            session_id,
            _now_ms(),
            self._idempotency_ttl * 1000,
            payment.fingerprint,
            self._max_declines,
        ]
        acknowledged = None
        if self._begin_replicated is None:
            status, reply = await self._saga_begin(begin_keys, begin_args)
        else:
            (status, reply), acknowledged = await self._begin_replicated(begin_keys, begin_args)
        if status == b"replay":
            attempt.repeated_key = True
            return await self._repeated_key(payment, reply)
        if status == b"empty":
            raise EmptyCart()
        if status == b"declined_too_often":
            raise TooManyDeclines(max(1, -(-int(reply) // 1000)))
        if status != b"begun":
            raise StoreError(f"unexpected reply from saga_begin: {status!r}")
        if acknowledged is not None and acknowledged < self._replicas:
            # Step A is on no replica: a failover could lose the order after B and C sold its
            # units (a sale and a charge for an order that no longer exists, and a retry that
            # orders the cart again). Undone before the stock is touched: nothing is charged.
            metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
            await self._cancel_order(payment, order_id, "error", remember=None)
            raise NotReplicated()
        outcome, response = await self._pay(payment, order_id, reply, 0)
        if outcome == "paid":
            attempt.total_cents = int(orjson.loads(response.body)["order"]["total_cents"])
        return outcome, response

    @property
    def _replicas(self) -> int:
        return self._cluster_writes.replicas if self._cluster_writes is not None else 0

    async def _repeated_key(self, payment: _Payment, record: bytes) -> tuple[str, CheckoutResponse]:
        if self._cluster_writes is not None and split_record(record)[1].startswith(_PENDING):
            # Resuming a pending order (its process died after A): A must be on a replica
            # before B, as for a new order. Rewriting the key's record and WAITing for it
            # confirms everything the master held before it, A included.
            confirmed = await self._cluster_writes.rewrite(payment.idempotency, record)
            if confirmed < self._replicas:
                metrics.WAIT_SHORTFALLS_BY_STEP["replay"].inc()
                raise NotReplicated()
        return await super()._repeated_key(payment, record)

    async def _pay(
        self, payment: _Payment, order_id: str, lines: bytes, total_cents: int
    ) -> tuple[str, CheckoutResponse]:
        """Steps B to D of the pending order `order_id` (new, or resumed for its key):
        reserve (a no-op if it was), charge with the order id as the reference, commit,
        finish; or compensate."""
        keys = self._ckeys
        status, *held = await self._saga_reserve(
            [keys.reservation(order_id), keys.stock, keys.reserved, keys.catalog],
            [payment.session_id, _plain_lines(lines), _now_ms(), self._reservation_ttl],
        )
        if status == b"insufficient_stock":
            # Not remembered for the key, as standalone: nothing was reserved or charged.
            await self._cancel_order(payment, order_id, "insufficient_stock", remember=None)
            return "insufficient_stock", _insufficient_stock(held[0])
        if status == b"released":
            # The reaper gave this order up (a resumed order past its timeout).
            await self._cancel_order(payment, order_id, "expired", remember=_EXPIRED)
            raise CheckoutExpired()
        if status not in (b"reserved", b"committed"):
            raise StoreError(f"unexpected reply from saga_reserve: {status!r}")
        priced, total_cents = held[0], int(held[1])
        try:
            result = await payment.processor.charge(
                amount_cents=total_cents, token=payment.token, reference=order_id
            )
        except PaymentUnavailable as exc:
            await self._give_back(payment, order_id, "error", remember=None)
            raise StoreUnavailable("The payment service is unavailable; try again shortly") from exc
        if not result.approved:
            declined = PaymentDeclined(
                f"Payment declined: {result.reason}" if result.reason else None
            )
            response = CheckoutResponse(402, error_body(declined))
            cancelled = await self._give_back(payment, order_id, "declined", remember=response)
            return "declined", CheckoutResponse.recall(cancelled) if cancelled else response

        commit_keys = [keys.reservation(order_id), keys.stock, keys.reserved, keys.orders_stream]
        commit_args: list[ScriptArg] = [
            order_id,
            _now_ms(),
            self._stream_maxlen,
            payment.request_id,
            self._reservation_ttl,
        ]
        if self._commit_replicated is None:
            committed, *_ = await self._saga_commit(commit_keys, commit_args)
        else:
            (committed, *_), acknowledged = await self._commit_replicated(commit_keys, commit_args)
            if committed == b"committed" and acknowledged < self._commit_replicated.replicas:
                # The sale is not on a replica yet: a failover could undo it after the order
                # is acknowledged. The order stays pending; a retry of the key (or the
                # reaper) finishes it, and confirms it again.
                metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
                raise NotReplicated()
        if committed == b"out_of_stock":
            logger.warning(
                "payment approved for an order no longer in stock: reconcile it with the "
                "payment provider (refund)",
                extra={"order_id": order_id, "payment_reference": order_id},
            )
            cancelled = await self._cancel_order(
                payment, order_id, "out_of_stock", remember=_OUT_OF_STOCK
            )
            return "insufficient_stock", (
                CheckoutResponse.recall(cancelled) if cancelled else _OUT_OF_STOCK
            )
        if committed != b"committed":
            logger.warning(
                "payment approved for a cancelled order: reconcile it with the payment "
                "provider (refund)",
                extra={"order_id": order_id, "payment_reference": order_id},
            )
            await self._cancel_order(payment, order_id, "expired", remember=_EXPIRED)
            raise CheckoutExpired()
        return await self._finish(
            payment.session_id, order_id, payment.idempotency, priced, total_cents
        )

    async def _finish(
        self, session_id: str, order_id: str, idempotency: str, priced: bytes, total_cents: int
    ) -> tuple[str, CheckoutResponse]:
        """Step D: the order is paid in its session's slot."""
        keys = self._ckeys
        response = CheckoutResponse(
            200,
            orjson.dumps(
                {"message": THANKS, "order": _order(order_id, priced, total_cents, "paid")}
            ),
        )
        finish_keys = [
            keys.session_order(session_id, order_id),
            keys.session_pending(session_id),
            *([idempotency] if idempotency else []),
        ]
        finish_args: list[ScriptArg] = [
            order_id,
            _now_ms(),
            response.remembered(),
            self._idempotency_ttl,
            priced,
            total_cents,
        ]
        if self._finish_replicated is None:
            outcome, *_ = await self._saga_finish(finish_keys, finish_args)
        else:
            (outcome, *_), acknowledged = await self._finish_replicated(finish_keys, finish_args)
            if outcome == b"paid" and acknowledged < self._finish_replicated.replicas:
                metrics.WAIT_SHORTFALLS_BY_STEP["checkout"].inc()
                raise NotReplicated()
        if outcome != b"paid":
            # Cancelled while its units were sold: cannot happen unless the order's hash was
            # changed by hand; the sale is in the stream.
            logger.error("a sold order is not pending any more", extra={"order_id": order_id})
            raise StoreError("the order changed while it was being finished")
        return "paid", response

    async def _give_back(
        self, payment: _Payment, order_id: str, status: str, *, remember: CheckoutResponse | None
    ) -> bytes | None:
        """Compensate B then A: release the reservation, cancel the order."""
        released, *_ = await self._saga_release(
            [self._ckeys.reservation(order_id), self._ckeys.reserved],
            [_now_ms(), self._reservation_ttl],
        )
        if released != b"released":
            raise StoreError(f"unexpected reply from saga_release: {released!r}")
        return await self._cancel_order(payment, order_id, status, remember=remember)

    async def _cancel_order(
        self, payment: _Payment, order_id: str, status: str, *, remember: CheckoutResponse | None
    ) -> bytes | None:
        return await self._cancel_session_order(
            payment.session_id, order_id, status, payment.idempotency, remember=remember
        )

    async def _cancel_session_order(
        self,
        session_id: str,
        order_id: str,
        status: str,
        idempotency: str,
        *,
        remember: CheckoutResponse | None,
    ) -> bytes | None:
        """`saga_cancel`: the response remembered (b"" for none), or None if the order was
        not pending."""
        keys = self._ckeys
        outcome, *reply = await self._saga_cancel(
            [
                keys.session_order(session_id, order_id),
                keys.session_pending(session_id),
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
                _CANCELLED_ORDER_TTL_SECONDS if status in ("expired", "out_of_stock") else 0,
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

    async def aclose(self) -> None:
        if self._cluster_writes is not None:
            await self._cluster_writes.aclose()

    async def release_expired(self, now_ms: int | None = None) -> int:
        """Repair checkouts pending past the timeout; returns how many it ended.

        Each bucket's index is read (one pipeline: a round trip per master). For each stale
        order the stock slot is asked to release its reservation: if it was sold (step C ran,
        the process stopped before D) the order is finished as paid; otherwise it is
        cancelled and its cart restored, its key answering 409 `CheckoutExpired`.
        """
        deadline = (now_ms if now_ms is not None else _now_ms()) - self._timeout_ms
        pipe = self._redis.pipeline(transaction=False)
        for bucket in range(SESSION_BUCKETS):
            pipe.zrangebyscore(
                self._ckeys.bucket_pending(bucket), "-inf", deadline, start=0, num=_REAP_BATCH
            )
        stale: list[list[bytes]] = await call("ZRANGEBYSCORE", pipe.execute())
        ended = 0
        for bucket, order_ids in enumerate(stale):
            for raw_id in order_ids:
                ended += await self._reap(bucket, raw_id.decode())
        return ended

    async def _reap(self, bucket: int, order_id: str) -> int:
        keys = self._ckeys
        order_key = keys.bucket_order(bucket, order_id)
        session_id, idempotency = await call(
            "HMGET", self._redis.hmget(order_key, ["session_id", "idempotency_key"])
        )
        if session_id is None:  # the order is gone: only the index entry is left
            await call("ZREM", self._redis.zrem(keys.bucket_pending(bucket), order_id))
            return 0
        session = session_id.decode()
        key = idempotency.decode() if idempotency else ""
        released, *held = await self._saga_release(
            [keys.reservation(order_id), keys.reserved], [_now_ms(), self._reservation_ttl]
        )
        if released == b"committed":
            logger.warning(
                "finished a paid checkout cut off before its last step",
                extra={"order_id": order_id},
            )
            await self._finish(session, order_id, key, held[0], int(held[1]))
            return 1
        cancelled = await self._cancel_session_order(
            session, order_id, "expired", key, remember=_EXPIRED
        )
        if cancelled is None:
            return 0
        metrics.CHECKOUTS_EXPIRED.inc()
        logger.warning(
            "cancelled a checkout past its timeout; its payment may have gone through: "
            "reconcile it with the payment provider",
            extra={"order_id": order_id, "payment_reference": order_id},
        )
        return 1


def _plain_lines(lines: bytes) -> bytes:
    """The order's lines as step B takes them, [{"id", "quantity"}] (a resumed order's
    lines may carry prices already)."""
    return orjson.dumps(
        [{"id": line["id"], "quantity": line["quantity"]} for line in orjson.loads(lines)]
    )
