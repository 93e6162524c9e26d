"""saga_finish.lua: cluster checkout, step D (session slot): the order paid, out of the
pending index, its response remembered (idempotent)."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from cartlib.store.durability import ConfirmedScript, ReplicatedWrites
from cartlib.store.scripts.shared import (
    FinishedCheckout,
    NotPending,
    Replicated,
    Reservation,
    optional_key,
    unexpected,
)

NAME = "saga_finish"


@dataclass(frozen=True, slots=True)
class Finished:
    """The order is paid (now, or already)."""


class SagaFinish:
    def __init__(self, redis: Redis, *, writes: ReplicatedWrites | None = None) -> None:
        self._script = ConfirmedScript(redis, NAME, prelude="checkout_prelude", writes=writes)

    async def __call__(
        self,
        *,
        order: str,
        pending: str,
        idempotency: str | None,
        order_id: str,
        now_ms: int,
        response: FinishedCheckout,
        response_ttl_seconds: int,
        reservation: Reservation,
    ) -> Replicated[Finished | NotPending]:
        reply, confirmed = await self._script(
            [order, pending, *optional_key(idempotency)],
            [
                order_id,
                now_ms,
                response.remembered(),
                response_ttl_seconds,
                reservation.items_json(),
                reservation.total_cents,
            ],
        )
        result: Finished | NotPending
        if reply[0] == b"paid":
            result = Finished()
        elif reply[0] == b"not_pending":
            result = NotPending()
        else:
            raise unexpected(NAME, reply)
        return Replicated(result, confirmed)
