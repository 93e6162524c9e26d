"""get_item.lua: one catalog item with its available stock, as JSON."""

from __future__ import annotations

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import Json


class GetItem:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, "get_item", prelude=("stock_prelude", "catalog_items"))

    async def __call__(
        self, *, catalog: str, stock: str, reserved: str, item_id: str
    ) -> Json | None:
        """`{"id", "name", "price_cents", "stock"}`, or None if the item is not in the catalog."""
        item: bytes | None = await self._script([catalog, stock, reserved], [item_id])
        return None if item is None else Json(item)
