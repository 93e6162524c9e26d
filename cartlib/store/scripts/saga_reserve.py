"""saga_reserve.lua: cluster checkout, step B (stock slot): reserve every line of an order,
all or nothing, recorded under the order id (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import (
    Committed,
    Line,
    Released,
    Reservation,
    Shortage,
    reservation,
    shortage,
    unexpected,
)

NAME = "saga_reserve"


@dataclass(frozen=True, slots=True)
class Reserved:
    """The order's lines are reserved (now, or already)."""

    reservation: Reservation


ReserveResult = Reserved | Committed | Released | Shortage


class SagaReserve:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, NAME, prelude=("stock_prelude", "reservation_prelude"))

    async def __call__(
        self,
        *,
        reservation_key: str,
        stock: str,
        reserved: str,
        catalog: str,
        reservations: str,
        order_id: str,
        session_id: str,
        lines: tuple[Line, ...],
        now_ms: int,
        tombstone_ttl_seconds: int,
    ) -> ReserveResult:
        wanted = orjson.dumps([{"id": line.id, "quantity": line.quantity} for line in lines])
        reply = await self._script(
            [reservation_key, stock, reserved, catalog, reservations],
            [session_id, wanted, now_ms, tombstone_ttl_seconds, order_id],
        )
        status = reply[0]
        if status == b"reserved":
            return Reserved(reservation(reply[1], reply[2]))
        if status == b"committed":
            return Committed(reservation(reply[1], reply[2]))
        if status == b"released":
            return Released()
        if status == b"insufficient_stock":
            return shortage(reply[1])
        raise unexpected(NAME, reply)
