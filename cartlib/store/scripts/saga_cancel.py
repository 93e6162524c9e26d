"""saga_cancel.lua: cluster checkout, compensation of step A (session slot): cancel the
pending order, its lines back in the cart, the response remembered."""

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

NAME = "saga_cancel"


class SagaCancel:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, NAME, prelude="checkout_prelude")

    async def __call__(
        self,
        *,
        order: str,
        pending: str,
        cart: str,
        declines: str,
        idempotency: str | None,
        cancellation: Cancellation,
    ) -> Cancelled | NotPending:
        reply = await self._script(
            [order, pending, cart, declines, *optional_key(idempotency)], cancellation.argv()
        )
        if reply[0] == b"cancelled":
            return cancelled(reply[1], reply[2])
        if reply[0] == b"not_pending":
            return NotPending()
        raise unexpected(NAME, reply)
