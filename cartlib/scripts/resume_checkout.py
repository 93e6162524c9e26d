"""resume_checkout.lua: a retry of an Idempotency-Key whose record names an unfinished
order looks at that order and its record together."""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from redis.asyncio import Redis

from cartlib.scripts import LuaScript
from cartlib.scripts.shared import (
    KeyRecord,
    Line,
    Replay,
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
    def __init__(self, redis: Redis) -> None:
        self._script = LuaScript(redis, NAME)

    async def __call__(self, *, idempotency: str, order: str, record: KeyRecord) -> ResumeResult:
        reply = await self._script([idempotency, order], [record.stored])
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
