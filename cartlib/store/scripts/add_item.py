"""add_item.lua: add units to a cart line, checking the item, its stock and the caps."""

from __future__ import annotations

from collections.abc import Awaitable

from redis.asyncio import Redis

from cartlib.store.scripts.cart_write import CartWrite, CartWriteScript, StockSource


class AddItem:
    def __init__(self, redis: Redis) -> None:
        self._script = CartWriteScript(redis, "add_item")

    def __call__(
        self,
        *,
        cart: str,
        stock: StockSource,
        item_id: str,
        units: int,
        max_quantity: int,
        max_lines: int,
        ttl_ms: int,
    ) -> Awaitable[CartWrite]:
        return self._script.run(cart, stock, [item_id, units, max_quantity, max_lines, ttl_ms])
