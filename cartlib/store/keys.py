"""The Redis key layout, in one place.

A cart and its idempotency records share the hash tag `{<session id>}`, so one session's keys
would sit in one Redis Cluster slot. The catalog and stock are two hashes rather than a key per
item, so every Lua script can declare every key it touches.
"""

from __future__ import annotations

import hashlib
import zlib
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one `prefix`, so several deployments can share a Redis."""

    prefix: str = "sf:"

    def cart(self, session_id: str) -> str:
        """Hash of item id -> quantity, with a sliding TTL."""
        return f"{self.prefix}cart:{{{session_id}}}"

    @property
    def catalog(self) -> str:
        """Hash of item id -> JSON `{"name", "price_cents"}`."""
        return f"{self.prefix}catalog"

    @property
    def stock(self) -> str:
        """Hash of item id -> units on hand: not sold yet, reserved ones included."""
        return f"{self.prefix}stock"

    @property
    def reserved(self) -> str:
        """Hash of item id -> units held by pending checkouts (available = on hand - this)."""
        return f"{self.prefix}stock:reserved"

    def order(self, order_id: str) -> str:
        """Hash of one order: session_id, status, items (JSON), total_cents, timestamps."""
        return f"{self.prefix}order:{order_id}"

    @property
    def orders_stream(self) -> str:
        """Stream of paid orders, for downstream consumers."""
        return f"{self.prefix}orders"

    @property
    def pending_checkouts(self) -> str:
        """Sorted set of order ids holding reserved stock, scored by reservation time (ms)."""
        return f"{self.prefix}checkouts:pending"

    def declines(self, session_id: str) -> str:
        """Counter of one session's recently declined checkouts (expires with its window)."""
        return f"{self.prefix}declines:{{{session_id}}}"

    def idempotency(self, session_id: str, idempotency_key: str) -> str:
        """The remembered response to one `Idempotency-Key` of one session.

        The client's key is hashed: it is free text, and the key name must stay short.
        """
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return f"{self.prefix}idem:{{{session_id}}}:{digest}"

    def cache(self, namespace: str, key: str) -> str:
        """A cache-aside entry."""
        return f"{self.prefix}cache:{namespace}:{key}"

    def cache_lock(self, namespace: str, key: str) -> str:
        """The lock held by the one process that is loading a cache-aside entry."""
        return f"{self.prefix}cache-lock:{namespace}:{key}"


# Sessions are spread over this many hash tags in cluster mode: enough for the slots to
# spread (and migrate) over the masters, few enough for the reaper to visit every tag's
# index of pending checkouts in one pass.
SESSION_BUCKETS = 1024


@dataclass(frozen=True, slots=True)
class ClusterKeys(Keys):
    """The key layout of cluster mode: two kinds of slot (docs/redis-cluster.md).

    * A session's slot, hash tag `{s<bucket>}` (the session id's bucket of
      `SESSION_BUCKETS`): its cart, idempotency records, decline counter, orders, and the
      bucket's index of pending checkouts. Every cart operation is one script on one slot,
      and so is every session-side step of a checkout, the index entry included.
    * The stock slot, hash tag `{stock}`: catalog, units on hand, units reserved, each
      order's reservation record, the index of reservations held, and the orders stream.
      A checkout reserves all its lines at once, all or nothing, only if they share a slot;
      and the stream, the ledger of sales, is appended in the same script that takes the
      units off hand.

    Standalone and Sentinel keep `Keys`: a running shop's stock, catalog and pending orders
    keep their names across the upgrade, and one server has one slot anyway.
    """

    def session_tag(self, session_id: str) -> str:
        return f"{{s{zlib.crc32(session_id.encode()) % SESSION_BUCKETS}}}"

    def cart(self, session_id: str) -> str:
        return f"{self.prefix}{self.session_tag(session_id)}:cart:{session_id}"

    def declines(self, session_id: str) -> str:
        return f"{self.prefix}{self.session_tag(session_id)}:declines:{session_id}"

    def idempotency(self, session_id: str, idempotency_key: str) -> str:
        digest = hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
        return f"{self.prefix}{self.session_tag(session_id)}:idem:{session_id}:{digest}"

    def session_order(self, session_id: str, order_id: str) -> str:
        """Hash of one order, in its session's slot: the saga's log (docs/redis-cluster.md)."""
        return f"{self.prefix}{self.session_tag(session_id)}:order:{order_id}"

    def bucket_order(self, bucket: int, order_id: str) -> str:
        """`session_order` by the session's bucket (the reaper knows only the bucket)."""
        return f"{self.prefix}{{s{bucket}}}:order:{order_id}"

    def session_pending(self, session_id: str) -> str:
        """Sorted set of the pending orders of the session's bucket, scored by start (ms)."""
        return self.bucket_pending(zlib.crc32(session_id.encode()) % SESSION_BUCKETS)

    def bucket_pending(self, bucket: int) -> str:
        return f"{self.prefix}{{s{bucket}}}:checkouts:pending"

    @property
    def catalog(self) -> str:
        return f"{self.prefix}{{stock}}:catalog"

    @property
    def stock(self) -> str:
        return f"{self.prefix}{{stock}}:stock"

    @property
    def reserved(self) -> str:
        return f"{self.prefix}{{stock}}:stock:reserved"

    @property
    def orders_stream(self) -> str:
        return f"{self.prefix}{{stock}}:orders"

    def reservation(self, order_id: str) -> str:
        """Hash of one order's reservation: status (reserved, committed, released), items
        with prices, total, session id. Kept after it ends so that every step on it is
        idempotent by order id."""
        return f"{self.prefix}{{stock}}:reservation:{order_id}"

    @property
    def reservations(self) -> str:
        """Sorted set of the reservations still `reserved` (order id, by time reserved): the
        reaper finds there the ones whose order is no longer pending (a release lost in a
        failover of the stock slot's master)."""
        return f"{self.prefix}{{stock}}:reservations"
