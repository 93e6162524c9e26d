"""`CartStore`: a cart is a Redis hash of item id -> quantity, changed only by Lua scripts.

Each operation is one script call: one round trip, atomic, and independent of what other
requests do to the same cart at the same moment. A write answers with the line it changed
and the number of lines, never the whole cart, so it costs the same whatever the cart's size
(the article's design re-read and re-wrote the whole cart on every add). Reading a cart is
the one operation that grows with it: the script returns the lines already encoded as JSON so
Python passes the bytes through.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass

from redis.asyncio import Redis

from cartlib.store import metrics
from cartlib.store.availability import Availability
from cartlib.store.errors import (
    CartError,
    InsufficientStock,
    ItemNotFound,
    QuantityLimitExceeded,
    TooManyLines,
)
from cartlib.store.keys import Keys
from cartlib.store.scripts.add_item import AddItem
from cartlib.store.scripts.cart_write import (
    CartWrite,
    Changed,
    OverLineCount,
    OverQuantityCap,
    OverStock,
    StockHashes,
    StockHint,
    StockSource,
    UnknownItem,
)
from cartlib.store.scripts.get_cart import GetCart
from cartlib.store.scripts.set_item import SetItem

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
        self._stock_hashes = StockHashes(keys.stock, keys.reserved)
        self._get = GetCart(redis)
        self._add = AddItem(redis)
        self._set = SetItem(redis)

    async def get(self, session_id: str) -> bytes:
        """The cart's lines; an unknown or expired cart is empty."""
        return await self._get(cart=self._keys.cart(session_id))

    async def add(self, session_id: str, item_id: str, quantity: int = 1) -> LineChange:
        """Add `quantity` units of an item, and renew the cart's TTL."""
        self._check_quantity(quantity, minimum=1)
        cart, stock = self._keys.cart(session_id), await self._stock(item_id)
        result = await self._add_units(cart, stock, item_id, quantity)
        if isinstance(result, UnknownItem) and (fresher := await self._fresher(item_id, stock)):
            result = await self._add_units(cart, fresher, item_id, quantity)
        change = self._change_or_raise(result, item_id)
        metrics.CART_ITEMS_ADDED.inc(quantity)
        return change

    async def set(self, session_id: str, item_id: str, quantity: int) -> LineChange:
        """Set a line's quantity (0 removes it), and renew the cart's TTL."""
        self._check_quantity(quantity, minimum=0)
        cart, stock = self._keys.cart(session_id), await self._stock(item_id)
        result = await self._set_line(cart, stock, item_id, quantity)
        if isinstance(result, UnknownItem) and (fresher := await self._fresher(item_id, stock)):
            result = await self._set_line(cart, fresher, item_id, quantity)
        return self._change_or_raise(result, item_id)

    async def remove(self, session_id: str, item_id: str) -> LineChange:
        """Remove a line; removing a line that is not there is not an error."""
        return await self.set(session_id, item_id, 0)

    def _add_units(
        self, cart: str, stock: StockSource, item_id: str, quantity: int
    ) -> Awaitable[CartWrite]:
        return self._add(
            cart=cart,
            stock=stock,
            item_id=item_id,
            units=quantity,
            max_quantity=self.max_quantity,
            max_lines=self.max_lines,
            ttl_ms=self._ttl_ms,
        )

    def _set_line(
        self, cart: str, stock: StockSource, item_id: str, quantity: int
    ) -> Awaitable[CartWrite]:
        return self._set(
            cart=cart,
            stock=stock,
            item_id=item_id,
            quantity=quantity,
            max_lines=self.max_lines,
            ttl_ms=self._ttl_ms,
        )

    async def _stock(self, item_id: str) -> StockSource:
        """Where a cart write reads the line's stock: the stock hashes, exactly; in cluster
        mode the figure of the in-process snapshot (the stock is in another slot)."""
        if self._availability is None:
            return self._stock_hashes
        return StockHint(await self._availability.units(item_id))

    async def _fresher(self, item_id: str, tried: StockSource) -> StockHint | None:
        """After an item the snapshot did not know (the write changed nothing): it may have
        been added since the snapshot was read, so one fresh read, and a figure to try once
        more if it knows the item now. None: nothing to try again."""
        if (
            self._availability is None
            or not isinstance(tried, StockHint)
            or tried.units is not None
            or self._availability.age() <= _FRESH_SECONDS
        ):
            return None
        await self._availability.refresh()
        units = await self._availability.units(item_id)
        return None if units is None else StockHint(units)

    def _check_quantity(self, quantity: int, *, minimum: int) -> None:
        if not minimum <= quantity <= self.max_quantity:
            raise QuantityLimitExceeded(
                f"quantity must be an integer from {minimum} to {self.max_quantity}"
            )

    def _change_or_raise(self, result: CartWrite, item_id: str) -> LineChange:
        if isinstance(result, Changed):
            return LineChange(item_id, result.quantity, result.line_count)
        raise self._error(result, item_id)

    def _error(self, result: CartWrite, item_id: str) -> CartError:
        if isinstance(result, OverQuantityCap):
            return QuantityLimitExceeded(
                f"A cart line holds at most {self.max_quantity} units; "
                f"{result.in_cart} of {item_id!r} already in the cart"
            )
        if isinstance(result, OverStock):
            return InsufficientStock(f"Only {result.available} of {item_id!r} in stock")
        if isinstance(result, OverLineCount):
            return TooManyLines(f"A cart holds at most {self.max_lines} different items")
        return ItemNotFound(f"Item {item_id!r} not found")
