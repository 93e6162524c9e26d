"""cancel_checkout.lua: undo a pending standalone checkout: its reservation given back, its
lines back in the cart, the response remembered."""

from __future__ import annotations

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript
from cartlib.store.scripts.shared import (
    Cancellation,
    Cancelled,
    NotPending,
    cancelled,
    optional_key,
    unexpected,
)

NAME = "cancel_checkout"


class CancelCheckout:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(
            redis, NAME, prelude=("stock_prelude", "reservation_prelude", "checkout_prelude")
        )

    async def __call__(
        self,
        *,
        order: str,
        pending: str,
        stock: str,
        reserved: str,
        cart: str,
        declines: str,
        idempotency: str | None,
        cancellation: Cancellation,
    ) -> Cancelled | NotPending:
        reply = await self._script(
            [order, pending, stock, reserved, cart, declines, *optional_key(idempotency)],
            cancellation.argv(),
        )
        if reply[0] == b"cancelled":
            return cancelled(reply[1], reply[2])
        if reply[0] == b"not_pending":
            return NotPending()
        raise unexpected(NAME, reply)
