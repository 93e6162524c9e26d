"""begin_checkout.lua: standalone checkout, first step: reserve every cart line and turn the
cart into a pending order, all or nothing."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import (
    DeclinedTooOften,
    Empty,
    KeyRecord,
    Opening,
    Replay,
    Reservation,
    Shortage,
    optional_key,
    reservation,
    shortage,
    unexpected,
)

NAME = "begin_checkout"


@dataclass(frozen=True, slots=True)
class Reserved:
    """The order is pending, its lines reserved."""

    reservation: Reservation


BeginResult = Replay | DeclinedTooOften | Empty | Shortage | Reserved


def opening_refusal(reply: list[Any]) -> Replay | DeclinedTooOften | Empty | None:
    """The replies begin_checkout and saga_begin share (`begin` in checkout_prelude.lua)."""
    status = reply[0]
    if status == b"replay":
        return Replay(KeyRecord.parse(reply[1]))
    if status == b"declined_too_often":
        return DeclinedTooOften(int(reply[1]))
    if status == b"empty":
        return Empty()
    return None


class BeginCheckout:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(
            redis, NAME, prelude=("stock_prelude", "reservation_prelude", "checkout_prelude")
        )

    async def __call__(
        self,
        *,
        cart: str,
        stock: str,
        reserved: str,
        catalog: str,
        order: str,
        pending: str,
        declines: str,
        idempotency: str | None,
        opening: Opening,
    ) -> BeginResult:
        reply = await self._script(
            [cart, stock, reserved, catalog, order, pending, declines, *optional_key(idempotency)],
            opening.argv(),
        )
        refused = opening_refusal(reply)
        if refused is not None:
            return refused
        if reply[0] == b"insufficient_stock":
            return shortage(reply[1])
        if reply[0] == b"reserved":
            return Reserved(reservation(reply[1], reply[2]))
        raise unexpected(NAME, reply)
