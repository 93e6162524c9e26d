"""resume_checkout.lua: a retry of an Idempotency-Key whose record names an unfinished
order looks at that order and its record together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from redis.asyncio import Redis

from cartlib.store.durability import ConfirmedScript, ReplicatedWrites
from cartlib.store.scripts.shared import (
    KeyRecord,
    Line,
    Replay,
    Replicated,
    Reservation,
    lines,
    reservation,
    unexpected,
)

NAME = "resume_checkout"


@dataclass(frozen=True, slots=True)
class StillPending:
    """The order is still to be paid. `reservation`: its priced lines as reserved when the
    order holds them (standalone), None when the reservation is in another slot (cluster)."""

    lines: tuple[Line, ...]
    reservation: Reservation | None


@dataclass(frozen=True, slots=True)
class Forgotten:
    """The record is gone: the checkout ended with nothing to remember."""


@dataclass(frozen=True, slots=True)
class Gone:
    """The order is no longer pending, yet its record still says so."""

    status: str


ResumeResult = StillPending | Replay | Forgotten | Gone


class ResumeCheckout:
    """With `writes`, a still pending order is confirmed on replicas before it is resumed:
    its record written again, WAIT pipelined after it (`confirmed`: only for `StillPending`,
    always true without `writes`). Nothing is written for the other results, so a record a
    concurrent attempt has just finished is never overwritten with the pending one."""

    def __init__(self, redis: Redis, *, writes: ReplicatedWrites | None = None) -> None:
        self._script = ConfirmedScript(redis, NAME, writes=writes)
        self._rewrite = "1" if writes is not None else "0"

    async def __call__(
        self, *, idempotency: str, order: str, record: KeyRecord
    ) -> Replicated[ResumeResult]:
        reply, confirmed = await self._script([idempotency, order], [record.stored, self._rewrite])
        return Replicated(self._result(reply), confirmed)

    @staticmethod
    def _result(reply: list[Any]) -> ResumeResult:
        status = reply[0]
        if status == b"pending":
            # Standalone orders hold their lines priced (reserved at begin); cluster orders
            # are priced in the stock slot (saga step B).
            items = orjson.loads(reply[1])
            priced = all("price_cents" in line for line in items)
            return StillPending(
                lines(reply[1]), reservation(reply[1], reply[2]) if priced else None
            )
        if status == b"replay":
            return Replay(KeyRecord.parse(reply[1]))
        if status == b"forgotten":
            return Forgotten()
        if status == b"gone":
            return Gone(reply[1].decode())
        raise unexpected(NAME, reply)
