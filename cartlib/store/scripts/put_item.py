"""put_item.lua: create or replace a catalog item and set its units on hand."""

from __future__ import annotations

import orjson
from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript


class PutItem:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, "put_item")

    async def __call__(
        self,
        *,
        catalog: str,
        stock: str,
        item_id: str,
        name: str,
        price_cents: int,
        on_hand: int,
        keep_existing: bool,
    ) -> bool:
        """Whether it was written (`keep_existing` leaves an item already there untouched)."""
        info = orjson.dumps({"name": name, "price_cents": price_cents})
        written: int = await self._script(
            [catalog, stock], [item_id, info, on_hand, "1" if keep_existing else "0"]
        )
        return written == 1
