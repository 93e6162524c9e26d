"""saga_begin.lua: cluster checkout, step A (session slot): turn the cart into a pending
order, nothing reserved yet."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from cartlib.store.durability import ConfirmedScript, ReplicatedWrites
from cartlib.store.scripts.begin_checkout import opening_refusal
from cartlib.store.scripts.shared import (
    DeclinedTooOften,
    Empty,
    Line,
    Opening,
    Replay,
    Replicated,
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
    """With `writes`, WAIT is pipelined with the script: a failover must not lose an order
    whose units the stock slot then sells (`confirmed` says whether a replica holds it)."""

    def __init__(self, redis: Redis, *, writes: ReplicatedWrites | None = None) -> None:
        self._script = ConfirmedScript(redis, NAME, prelude="checkout_prelude", writes=writes)

    async def __call__(
        self,
        *,
        cart: str,
        order: str,
        pending: str,
        declines: str,
        idempotency: str | None,
        opening: Opening,
    ) -> Replicated[SagaBeginResult]:
        reply, confirmed = await self._script(
            [cart, order, pending, declines, *optional_key(idempotency)], opening.argv()
        )
        result: SagaBeginResult
        refused = opening_refusal(reply)
        if refused is not None:
            result = refused
        elif reply[0] == b"begun":
            result = Begun(lines(reply[1]))
        else:
            raise unexpected(NAME, reply)
        return Replicated(result, confirmed)
