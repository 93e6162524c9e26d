"""saga_commit.lua: cluster checkout, step C (stock slot): the reserved units are sold and
the sale streamed (idempotent), or, the units being gone, the reservation released."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from cartlib.store.durability import ConfirmedScript, ReplicatedWrites
from cartlib.store.scripts.shared import Committed, Released, Replicated, reservation, unexpected

NAME = "saga_commit"


@dataclass(frozen=True, slots=True)
class OutOfStock:
    """An admin set what is on hand below the reservation: nothing sold, it is released."""


CommitResult = Committed | OutOfStock | Released


class SagaCommit:
    def __init__(self, redis: Redis, *, writes: ReplicatedWrites | None = None) -> None:
        self._script = ConfirmedScript(
            redis, NAME, prelude=("stock_prelude", "reservation_prelude"), writes=writes
        )

    async def __call__(
        self,
        *,
        reservation_key: str,
        stock: str,
        reserved: str,
        stream: str,
        reservations: str,
        order_id: str,
        now_ms: int,
        stream_maxlen: int,
        request_id: str,
        keep_seconds: int,
    ) -> Replicated[CommitResult]:
        reply, confirmed = await self._script(
            [reservation_key, stock, reserved, stream, reservations],
            [order_id, now_ms, stream_maxlen, request_id, keep_seconds],
        )
        result: CommitResult
        if reply[0] == b"committed":
            result = Committed(reservation(reply[1], reply[2]))
        elif reply[0] == b"out_of_stock":
            result = OutOfStock()
        elif reply[0] == b"released":
            result = Released()
        else:
            raise unexpected(NAME, reply)
        return Replicated(result, confirmed)
