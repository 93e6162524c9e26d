"""`CartStore`: a cart is a Redis hash of item id -> quantity, changed only by Lua scripts.

Each operation is one script call: one round trip, atomic, and independent of what other
requests do to the same cart at the same moment. Scripts return the cart already encoded as
JSON so a big cart costs Python nothing to serialise.
"""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from cartlib import metrics
from cartlib.errors import (
    CartError,
    InsufficientStock,
    ItemNotFound,
    QuantityLimitExceeded,
    StoreError,
    TooManyLines,
)
from cartlib.keys import Keys
from cartlib.scripts import LuaScript


class CartStore:
    """Reads and changes carts. Every method returns the cart's lines as JSON bytes:
    `[{"id": ..., "quantity": n}, ...]`, sorted by item id.

    **Parameters:**

    * **redis** - the client from `create_redis()`.
    * **keys** - the key layout.
    * **ttl_seconds** - a cart expires this long after its last change.
    * **max_quantity** - the most units of one item a cart may hold.
    * **max_lines** - the most distinct items a cart may hold.
    """

    def __init__(
        self, redis: Redis, *, keys: Keys, ttl_seconds: int, max_quantity: int, max_lines: int
    ) -> None:
        self._keys = keys
        self._ttl_ms = ttl_seconds * 1000
        self.max_quantity = max_quantity
        self._max_lines = max_lines
        self._get = LuaScript(redis, "get_cart", prelude="cart_lines")
        self._add = LuaScript(redis, "add_item", prelude="cart_lines")
        self._set = LuaScript(redis, "set_item", prelude="cart_lines")

    async def get(self, session_id: str) -> bytes:
        """The cart's lines; an unknown or expired cart is empty."""
        lines: bytes = await self._get([self._keys.cart(session_id)])
        return lines

    async def add(self, session_id: str, item_id: str, quantity: int = 1) -> bytes:
        """Add `quantity` units of an item, and renew the cart's TTL."""
        self._check_quantity(quantity, minimum=1)
        reply = await self._add(
            [self._keys.cart(session_id), self._keys.stock],
            [item_id, quantity, self.max_quantity, self._max_lines, self._ttl_ms],
        )
        lines = self._lines_or_raise(reply, item_id)
        metrics.CART_ITEMS_ADDED.inc(quantity)
        return lines

    async def set(self, session_id: str, item_id: str, quantity: int) -> bytes:
        """Set a line's quantity (0 removes it), and renew the cart's TTL."""
        self._check_quantity(quantity, minimum=0)
        reply = await self._set(
            [self._keys.cart(session_id), self._keys.stock],
            [item_id, quantity, self._max_lines, self._ttl_ms],
        )
        return self._lines_or_raise(reply, item_id)

    async def remove(self, session_id: str, item_id: str) -> bytes:
        """Remove a line; removing a line that is not there is not an error."""
        return await self.set(session_id, item_id, 0)

    def _check_quantity(self, quantity: int, *, minimum: int) -> None:
        if not minimum <= quantity <= self.max_quantity:
            raise QuantityLimitExceeded(
                f"quantity must be an integer from {minimum} to {self.max_quantity}"
            )

    def _lines_or_raise(self, reply: list[bytes], item_id: str) -> bytes:
        status, detail = reply
        if status == b"ok":
            return detail
        raise self._error(status, detail, item_id)

    def _error(self, status: bytes, detail: bytes, item_id: str) -> CartError:
        if status == b"unknown_item":
            return ItemNotFound(f"Item {item_id!r} not found")
        if status == b"quantity_cap":
            return QuantityLimitExceeded(
                f"A cart line holds at most {self.max_quantity} units; "
                f"{int(detail)} of {item_id!r} already in the cart"
            )
        if status == b"out_of_stock":
            return InsufficientStock(f"Only {int(detail)} of {item_id!r} in stock")
        if status == b"too_many_lines":
            return TooManyLines(f"A cart holds at most {self._max_lines} different items")
        return StoreError(f"unexpected reply from a cart script: {status!r}")


def cart_json(session_id: str, lines: bytes) -> bytes:
    """The cart as the API shows it: `{"session_id": ..., "items": [...]}`."""
    return b'{"session_id":' + orjson.dumps(session_id) + b',"items":' + lines + b"}"
