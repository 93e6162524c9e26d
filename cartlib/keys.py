"""The Redis key layout, in one place.

A cart and its idempotency records share the hash tag `{<session id>}`, so one session's keys
would sit in one Redis Cluster slot. The catalog and stock are two hashes rather than a key per
item, so every Lua script can declare every key it touches.
"""

from __future__ import annotations

import hashlib
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
