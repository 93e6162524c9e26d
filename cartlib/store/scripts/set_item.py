"""set_item.lua: set a cart line's quantity (0 removes it), checking the item, its stock and
the cap on lines."""

from __future__ import annotations

from collections.abc import Awaitable

from redis.asyncio import Redis

from cartlib.store.scripts.cart_write import CartWrite, CartWriteScript, StockSource


class SetItem:
    def __init__(self, redis: Redis) -> None:
        self._script = CartWriteScript(redis, "set_item")

    def __call__(
        self,
        *,
        cart: str,
        stock: StockSource,
        item_id: str,
        quantity: int,
        max_lines: int,
        ttl_ms: int,
    ) -> Awaitable[CartWrite]:
        return self._script.run(cart, stock, [item_id, quantity, max_lines, ttl_ms])
