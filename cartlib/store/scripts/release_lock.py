"""release_lock.lua: delete a lock only if it still holds this owner's token."""

from __future__ import annotations

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript


class ReleaseLock:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, "release_lock")

    async def __call__(self, *, lock: str, token: str) -> bool:
        """Whether the lock was this owner's and is gone now."""
        deleted: int = await self._script([lock], [token])
        return deleted == 1
