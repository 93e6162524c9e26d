"""saga_begin.lua: cluster checkout, step A (session slot): turn the cart into a pending
order, nothing reserved yet."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from cartlib.scripts import LuaScript
from cartlib.scripts.begin_checkout import opening_refusal
from cartlib.scripts.shared import (
    DeclinedTooOften,
    Empty,
    Line,
    Opening,
    Replay,
    lines,
    optional_key,
    unexpected,
)

NAME = "saga_begin"


@dataclass(frozen=True, slots=True)
class Begun:
    """The order is pending with these lines (sorted by id), not reserved yet."""

    lines: tuple[Line, ...]


SagaBeginResult = Replay | DeclinedTooOften | Empty | Begun


class SagaBegin:
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, NAME, prelude="checkout_prelude")

    async def __call__(
        self,
        *,
        cart: str,
        order: str,
        pending: str,
        declines: str,
        idempotency: str | None,
        opening: Opening,
    ) -> SagaBeginResult:
        reply = await self._script(
            [cart, order, pending, declines, *optional_key(idempotency)], opening.argv()
        )
        refused = opening_refusal(reply)
        if refused is not None:
            return refused
        if reply[0] == b"begun":
            return Begun(lines(reply[1]))
        raise unexpected(NAME, reply)
