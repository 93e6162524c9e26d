"""list_items.lua: the whole catalog with available stock, as JSON."""

from __future__ import annotations

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import Json


class ListItems:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, "list_items", prelude="catalog_items")

    async def __call__(self, *, catalog: str, stock: str, reserved: str) -> Json:
        """`{"items": [...]}`, sorted by id."""
        listing: bytes = await self._script([catalog, stock, reserved])
        return Json(listing)
