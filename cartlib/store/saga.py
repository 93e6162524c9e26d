"""`ClusterOrderStore`: checkout on a Redis Cluster, where the cart and the stock live in
different slots, as a saga whose log is the pending order in the session's slot.

The states and transitions are `cartlib.store.checkout_flow`'s, as standalone; here is the
cluster `Transport`, each step one script on one slot, each idempotent by order id
(docs/redis-cluster.md has what a crash between any two steps leaves):

A. begin: `saga_begin` (session slot): the cart becomes a pending order, listed in its
   bucket's index of pending checkouts; the Idempotency-Key record says
   `pending:<order id>`. With `wait_replicas`, WAIT is pipelined with it: an order no
   replica holds is cancelled before the stock slot is touched (503), and a retry resuming
   a pending order confirms it the same way (`resume_checkout`).
B. reserve: `saga_reserve` (stock slot): every line reserved, all or nothing, recorded
   under the order id with its prices. Short: the order is cancelled (`saga_cancel`), the
   cart is back, 409 with the shortage.
   The payment is charged, with the order id as its reference.
C. settle, first: `saga_commit` (stock slot): the units leave what is on hand and the sale
   is appended to the orders stream. Declined: `saga_release` gives the reservation back,
   `saga_cancel` the cart.
D. settle, then: `saga_finish` (session slot): the order is paid, out of the index, its
   response remembered for the key.

Four round trips for a paid checkout (two per slot, because each slot's change must follow
the payment or precede it), three for a shortage. The reaper visits every bucket's index: a
pending order older than the checkout timeout is released on the stock slot, which answers
whether it was sold (step C ran: the order is finished as paid) or not (it is cancelled and
its cart restored). Then it sweeps the stock slot's index of reservations held: one whose
order is pending nowhere (a compensation, which is not WAITed for, lost in a failover of the
stock master after the session side's cancel was applied) is released.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

from redis.asyncio import Redis

from cartlib.store.checkout_flow import (
    CheckoutRequest,
    OrderRef,
    OutOfStock,
    PendingOrder,
    Sold,
    StaleOrder,
    Transport,
    now_ms,
)
from cartlib.store.durability import ClusterReplicatedWrites, NodeClient
from cartlib.store.errors import StoreError
from cartlib.store.keys import SESSION_BUCKETS, ClusterKeys
from cartlib.store.orders import REAP_BATCH, CheckoutPolicy, IndexedTransport, OrderStore
from cartlib.store.redis import call
from cartlib.store.scripts.saga_begin import Begun, SagaBegin
from cartlib.store.scripts.saga_cancel import SagaCancel
from cartlib.store.scripts.saga_commit import CommitResult, SagaCommit
from cartlib.store.scripts.saga_commit import OutOfStock as CommitOutOfStock
from cartlib.store.scripts.saga_finish import Finished, SagaFinish
from cartlib.store.scripts.saga_release import SagaRelease
from cartlib.store.scripts.saga_reserve import Reserved, SagaReserve
from cartlib.store.scripts.shared import (
    Cancelled,
    Committed,
    DeclinedTooOften,
    Empty,
    FinishedCheckout,
    NotPending,
    Released,
    Replay,
    Replicated,
    Reservation,
    Shortage,
)

logger = logging.getLogger("storefront.orders")


class SagaCheckout(IndexedTransport, Transport):
    """The flow's steps as the saga's: begin (A), reserve (B), settle as commit (C) then
    finish (D); release and cancel compensate B and A."""

    def __init__(
        self,
        redis: Redis,
        keys: ClusterKeys,
        policy: CheckoutPolicy,
        writes: ClusterReplicatedWrites | None,
    ) -> None:
        super().__init__(redis, writes, confirm_resumed=True)
        self._keys = keys
        self._policy = policy
        self._cluster_writes = writes
        # How long a finished reservation (or a tombstone) answers for its order id: as long
        # as a retry of the order's Idempotency-Key may come.
        self._reservation_ttl = policy.idempotency_ttl_seconds
        self.begin_script = SagaBegin(redis, writes=writes)
        self.reserve_script = SagaReserve(redis)
        self.commit_script = SagaCommit(redis, writes=writes)
        self.finish_script = SagaFinish(redis, writes=writes)
        self.release_script = SagaRelease(redis)
        self.cancel_script = SagaCancel(redis)

    async def begin(
        self, request: CheckoutRequest, order_id: str
    ) -> PendingOrder | Replay | DeclinedTooOften | Empty | Shortage:
        keys, session_id = self._keys, request.session_id
        begun = await self.begin_script(
            cart=keys.cart(session_id),
            order=keys.session_order(session_id, order_id),
            pending=keys.session_pending(session_id),
            declines=keys.declines(session_id),
            idempotency=request.idempotency,
            opening=self._policy.opening(request, order_id),
        )
        result = begun.result
        if isinstance(result, Begun):
            return PendingOrder(order_id, result.lines, None, begun.confirmed)
        return result

    def order_key(self, session_id: str, order_id: str) -> str:
        return self._keys.session_order(session_id, order_id)

    async def reserve(
        self, request: CheckoutRequest, order: PendingOrder
    ) -> Reservation | Shortage | Released:
        """Step B (a no-op if it ran: the reservation as recorded)."""
        keys = self._keys
        reserved = await self.reserve_script(
            reservation_key=keys.reservation(order.order_id),
            stock=keys.stock,
            reserved=keys.reserved,
            catalog=keys.catalog,
            reservations=keys.reservations,
            order_id=order.order_id,
            session_id=request.session_id,
            lines=order.lines,
            now_ms=now_ms(),
            tombstone_ttl_seconds=self._reservation_ttl,
        )
        if isinstance(reserved, Reserved | Committed):
            return reserved.reservation
        return reserved

    async def settle(
        self, ref: OrderRef, request_id: str, reservation: Reservation, response: FinishedCheckout
    ) -> Sold | OutOfStock | Released:
        """Step C, then D."""
        committed = await self.commit(ref.order_id, request_id)
        result = committed.result
        if isinstance(result, CommitOutOfStock):
            return OutOfStock(None)  # the order is still pending: the flow cancels it
        if isinstance(result, Released):
            return result
        if not committed.confirmed:
            # The sale is not on a replica yet: the order stays pending; a retry of the key
            # (or the reaper) finishes it, and confirms it again.
            return Sold(confirmed=False)
        return await self.finish(ref, reservation, response)

    async def commit(self, order_id: str, request_id: str) -> Replicated[CommitResult]:
        """Step C (idempotent: a sale already committed is answered again)."""
        keys = self._keys
        return await self.commit_script(
            reservation_key=keys.reservation(order_id),
            stock=keys.stock,
            reserved=keys.reserved,
            stream=keys.orders_stream,
            reservations=keys.reservations,
            order_id=order_id,
            now_ms=now_ms(),
            stream_maxlen=self._policy.stream_maxlen,
            request_id=request_id,
            keep_seconds=self._reservation_ttl,
        )

    async def finish(
        self, ref: OrderRef, reservation: Reservation, response: FinishedCheckout
    ) -> Sold:
        """Step D: the order is paid in its session's slot."""
        keys = self._keys
        finished = await self.finish_script(
            order=keys.session_order(ref.session_id, ref.order_id),
            pending=keys.session_pending(ref.session_id),
            idempotency=ref.idempotency,
            order_id=ref.order_id,
            now_ms=now_ms(),
            response=response,
            response_ttl_seconds=self._policy.idempotency_ttl_seconds,
            reservation=reservation,
        )
        if not isinstance(finished.result, Finished):
            # Cancelled while its units were sold: cannot happen unless the order's hash was
            # changed by hand; the sale is in the stream.
            logger.error("a sold order is not pending any more", extra={"order_id": ref.order_id})
            raise StoreError("the order changed while it was being finished")
        return Sold(finished.confirmed)

    async def release(self, order_id: str) -> Released | Committed:
        return await self.release_script(
            reservation_key=self._keys.reservation(order_id),
            reserved=self._keys.reserved,
            reservations=self._keys.reservations,
            order_id=order_id,
            now_ms=now_ms(),
            keep_seconds=self._reservation_ttl,
        )

    async def cancel(
        self, ref: OrderRef, status: str, remember: FinishedCheckout | None
    ) -> Cancelled | NotPending:
        keys, session_id = self._keys, ref.session_id
        return await self.cancel_script(
            order=keys.session_order(session_id, ref.order_id),
            pending=keys.session_pending(session_id),
            cart=keys.cart(session_id),
            declines=keys.declines(session_id),
            idempotency=ref.idempotency,
            cancellation=self._policy.cancellation(ref.order_id, status, remember),
        )

    async def stale(self, deadline_ms: int) -> list[StaleOrder]:
        """Every bucket's index: the indexes read in one pipeline (a round trip per master),
        then each stale order's hash."""
        keys = self._keys
        pipe = self._redis.pipeline(transaction=False)
        for bucket in range(SESSION_BUCKETS):
            pipe.zrangebyscore(
                keys.bucket_pending(bucket), "-inf", deadline_ms, start=0, num=REAP_BATCH
            )
        indexes: list[list[bytes]] = await call("ZRANGEBYSCORE", pipe.execute())
        return [
            await self._stale(
                raw.decode(),
                functools.partial(keys.bucket_order, bucket),
                keys.bucket_pending(bucket),
            )
            for bucket, order_ids in enumerate(indexes)
            for raw in order_ids
        ]

    async def release_orphans(self, deadline_ms: int) -> int:
        """Settle the reservations held since before `deadline_ms` whose order is pending
        nowhere; returns how many it released or sold.

        Compensations are not WAITed for: a `saga_release` lost in a failover of the stock
        slot's master, after `saga_cancel` ended the order in its session's slot, leaves the
        units `reserved` on the promoted replica with no pending order for the reaper to find:
        they are released. With `wait_replicas` 0 the sale (C) is not WAITed for either, so a
        paid order's reservation may come back `reserved` the same way: it is committed again
        (the customer paid for those units). A pending order is the flow's (or the reaper's,
        past the timeout) to end.
        """
        keys = self._keys
        order_ids: list[bytes] = await call(
            "ZRANGEBYSCORE",
            self._redis.zrangebyscore(
                keys.reservations, "-inf", deadline_ms, start=0, num=REAP_BATCH
            ),
        )
        settled = 0
        for raw in order_ids:
            order_id = raw.decode()
            holder = await self._holder(order_id)
            status = None if holder is None else await self._order_status(holder, order_id)
            if status == "pending":
                continue
            if status == "paid":
                settled += await self._sell_again(order_id)
                continue
            # Not held any more (an entry left by an older version): release only drops it.
            if isinstance(await self.release(order_id), Released) and holder is not None:
                logger.warning(
                    "released units held for an order pending nowhere (a release lost in a "
                    "failover of the stock slot's master)",
                    extra={"order_id": order_id},
                )
                settled += 1
        return settled

    async def _holder(self, order_id: str) -> str | None:
        """The session whose order holds the reservation `order_id`; None if it holds
        nothing (sold, released, or gone)."""
        status, session_id = await call(
            "HMGET", self._redis.hmget(self._keys.reservation(order_id), ["status", "session_id"])
        )
        return session_id.decode() if status == b"reserved" and session_id else None

    async def _order_status(self, session_id: str, order_id: str) -> str | None:
        """The order's status in its session's slot (`pending`, `paid`, `cancelled`), or
        None if it has expired."""
        order = self._keys.session_order(session_id, order_id)
        status: bytes | None = await call("HGET", self._redis.hget(order, "status"))
        return None if status is None else status.decode()

    async def _sell_again(self, order_id: str) -> int:
        committed = (await self.commit(order_id, request_id="reaper")).result
        if isinstance(committed, Committed):
            logger.warning(
                "sold again the units of a paid order whose sale was lost (a commit lost in a "
                "failover of the stock slot's master)",
                extra={"order_id": order_id},
            )
            return 1
        reason = (
            "what is on hand was set below them"
            if isinstance(committed, CommitOutOfStock)
            else "its reservation was released meanwhile"
        )
        logger.error(
            "a paid order's units could not be sold again: %s",
            reason,
            extra={"order_id": order_id},
        )
        return 0

    async def aclose(self) -> None:
        if self._cluster_writes is not None:
            await self._cluster_writes.aclose()


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
        self._ckeys = keys
        self._node_client = node_client
        super().__init__(redis, keys=keys, **options)

    def _transport(
        self, policy: CheckoutPolicy, wait_replicas: int, wait_timeout_ms: int
    ) -> Transport:
        writes = None
        if wait_replicas > 0:
            if self._node_client is None:
                raise ValueError("wait_replicas > 0 in cluster mode needs node_client")
            writes = ClusterReplicatedWrites(
                self._redis,
                replicas=wait_replicas,
                timeout_ms=wait_timeout_ms,
                node_client=self._node_client,
            )
        return SagaCheckout(self._redis, self._ckeys, policy, writes)
