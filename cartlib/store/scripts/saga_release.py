"""saga_release.lua: cluster checkout, compensation of step B (stock slot): give back what an
order reserved, or leave a tombstone (idempotent)."""

from __future__ import annotations

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import Committed, Released, reservation, unexpected

NAME = "saga_release"


class SagaRelease:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, NAME, prelude=("stock_prelude", "reservation_prelude"))

    async def __call__(
        self,
        *,
        reservation_key: str,
        reserved: str,
        reservations: str,
        order_id: str,
        now_ms: int,
        keep_seconds: int,
    ) -> Released | Committed:
        """`Committed`: the order was sold (step C ran) and must be finished, not cancelled."""
        reply = await self._script(
            [reservation_key, reserved, reservations], [now_ms, keep_seconds, order_id]
        )
        if reply[0] == b"released":
            return Released()
        if reply[0] == b"committed":
            return Committed(reservation(reply[1], reply[2]))
        raise unexpected(NAME, reply)
