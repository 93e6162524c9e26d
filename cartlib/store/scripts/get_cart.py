"""get_cart.lua: a cart's lines as JSON, sorted by id."""

from __future__ import annotations

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import Json


class GetCart:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, "get_cart")

    async def __call__(self, *, cart: str) -> Json:
        """`[{"id", "quantity"}, ...]`; an unknown or expired cart is `[]`."""
        lines: bytes = await self._script([cart])
        return Json(lines)
