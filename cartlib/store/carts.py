"""`CartStore`: a cart is a Redis hash of item id -> quantity, changed only by Lua scripts.

Each operation is one script call: one round trip, atomic, and independent of what other
requests do to the same cart at the same moment. A write answers with the line it changed
and the number of lines, never the whole cart, so it costs the same whatever the cart's size
(the article's design re-read and re-wrote the whole cart on every add). Reading a cart is
the one operation that grows with it: the script returns the lines already encoded as JSON so
Python passes the bytes through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from cartlib.store import metrics
from cartlib.store.availability import Availability
from cartlib.store.errors import (
    CartError,
    InsufficientStock,
    ItemNotFound,
    QuantityLimitExceeded,
    StoreError,
    TooManyLines,
)
from cartlib.store.keys import Keys
from cartlib.store.scripts import LuaScript, ScriptArg

# A snapshot younger than this is not read again for an unknown item: it already is fresh,
# and a client adding unknown ids must not make every add read the whole catalog.
_FRESH_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class LineChange:
    """What a cart write did: the line's quantity now (0: no such line) and the cart's lines."""

    item_id: str
    quantity: int
    line_count: int


class CartStore:
    """Reads and changes carts. `get` returns the cart's lines as JSON bytes,
    `[{"id": ..., "quantity": n}, ...]` sorted by item id; writes return a `LineChange`.

    **Parameters:**

    * **redis** - the client from `create_redis()`.
    * **keys** - the key layout.
    * **ttl_seconds** - a cart expires this long after its last change.
    * **max_quantity** - the most units of one item a cart may hold.
    * **max_lines** - the most distinct items a cart may hold.
    * **availability** - cluster mode: the in-process stock snapshot an add or set checks
      (the stock is in another slot); None: the script reads the stock hashes exactly.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        ttl_seconds: int,
        max_quantity: int,
        max_lines: int,
        availability: Availability | None = None,
    ) -> None:
        self._keys = keys
        self._ttl_ms = ttl_seconds * 1000
        self.max_quantity = max_quantity
        self.max_lines = max_lines
        self._availability = availability
        prelude = (
            ("stock_prelude", "cart_stock_prelude")
            if availability is None
            else ("cart_hint_prelude")
        )
        self._get = LuaScript(redis, "get_cart")
        self._add = LuaScript(redis, "add_item", prelude=prelude)
        self._set = LuaScript(redis, "set_item", prelude=prelude)

    async def get(self, session_id: str) -> bytes:
        """The cart's lines; an unknown or expired cart is empty."""
        lines: bytes = await self._get([self._keys.cart(session_id)])
        return lines

    async def add(self, session_id: str, item_id: str, quantity: int = 1) -> LineChange:
        """Add `quantity` units of an item, and renew the cart's TTL."""
        self._check_quantity(quantity, minimum=1)
        reply = await self._write(
            self._add, session_id, item_id, [quantity, self.max_quantity, self.max_lines]
        )
        change = self._change_or_raise(reply, item_id)
        metrics.CART_ITEMS_ADDED.inc(quantity)
        return change

    async def set(self, session_id: str, item_id: str, quantity: int) -> LineChange:
        """Set a line's quantity (0 removes it), and renew the cart's TTL."""
        self._check_quantity(quantity, minimum=0)
        reply = await self._write(self._set, session_id, item_id, [quantity, self.max_lines])
        return self._change_or_raise(reply, item_id)

    async def remove(self, session_id: str, item_id: str) -> LineChange:
        """Remove a line; removing a line that is not there is not an error."""
        return await self.set(session_id, item_id, 0)

    async def _write(
        self, script: LuaScript, session_id: str, item_id: str, args: list[ScriptArg]
    ) -> list[Any]:
        """Run a cart write: one script call. In cluster mode with the stock figure of the
        snapshot; an item the snapshot does not know may have been added since it was read,
        so that reply (which changed nothing) makes one fresh read and one more try."""
        cart = self._keys.cart(session_id)
        if self._availability is None:
            keys = [cart, self._keys.stock, self._keys.reserved]
            reply: list[Any] = await script(keys, [item_id, *args, self._ttl_ms])
            return reply
        units = await self._availability.units(item_id)
        reply = await script([cart], [item_id, *args, self._ttl_ms, -1 if units is None else units])
        if reply[0] == b"unknown_item" and self._availability.age() > _FRESH_SECONDS:
            await self._availability.refresh()
            units = await self._availability.units(item_id)
            if units is not None:
                reply = await script([cart], [item_id, *args, self._ttl_ms, units])
        return reply

    def _check_quantity(self, quantity: int, *, minimum: int) -> None:
        if not minimum <= quantity <= self.max_quantity:
            raise QuantityLimitExceeded(
                f"quantity must be an integer from {minimum} to {self.max_quantity}"
            )

    def _change_or_raise(self, reply: list[Any], item_id: str) -> LineChange:
        # {'ok', quantity, line count} (integer replies) or {error, detail} (bytes).
        status = reply[0]
        if status == b"ok":
            return LineChange(item_id, reply[1], reply[2])
        raise self._error(status, reply[1], item_id)

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
            return TooManyLines(f"A cart holds at most {self.max_lines} different items")
        return StoreError(f"unexpected reply from a cart script: {status!r}")
