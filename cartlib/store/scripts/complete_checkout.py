"""complete_checkout.lua: standalone checkout, last step after an approved payment: sell the
reserved units, stream the sale, mark the order paid; or, the units being gone, cancel it."""

from __future__ import annotations

from dataclasses import dataclass

from redis.asyncio import Redis

from cartlib.store.durability import ConfirmedScript, ReplicatedWrites
from cartlib.store.scripts.shared import (
    Cancelled,
    FinishedCheckout,
    NotPending,
    Replicated,
    cancelled,
    optional_key,
    unexpected,
)

NAME = "complete_checkout"


@dataclass(frozen=True, slots=True)
class Completed:
    """The order is paid (now, or already)."""


@dataclass(frozen=True, slots=True)
class SoldOut:
    """An admin set what is on hand below the order while it was being paid: nothing sold,
    the order cancelled as `out_of_stock`."""

    cancelled: Cancelled


CompleteResult = Completed | SoldOut | NotPending


class CompleteCheckout:
    def __init__(self, redis: Redis, *, writes: ReplicatedWrites | None = None) -> None:
        self._script = ConfirmedScript(
            redis,
            NAME,
            prelude=("stock_prelude", "reservation_prelude", "checkout_prelude"),
            writes=writes,
        )

    async def __call__(
        self,
        *,
        order: str,
        pending: str,
        stream: str,
        stock: str,
        reserved: str,
        cart: str,
        idempotency: str | None,
        order_id: str,
        now_ms: int,
        response: FinishedCheckout,
        response_ttl_seconds: int,
        stream_maxlen: int,
        request_id: str,
        out_of_stock: FinishedCheckout,
        out_of_stock_keep_seconds: int,
        cart_ttl_ms: int,
        max_quantity: int,
        max_lines: int,
    ) -> Replicated[CompleteResult]:
        reply, confirmed = await self._script(
            [order, pending, stream, stock, reserved, cart, *optional_key(idempotency)],
            [
                order_id,
                now_ms,
                response.remembered(),
                response_ttl_seconds,
                stream_maxlen,
                request_id,
                out_of_stock.remembered(),
                out_of_stock_keep_seconds,
                cart_ttl_ms,
                max_quantity,
                max_lines,
            ],
        )
        result: CompleteResult
        if reply[0] == b"paid":
            result = Completed()
        elif reply[0] == b"out_of_stock":
            result = SoldOut(cancelled(reply[1], reply[2]))
        elif reply[0] == b"not_pending":
            result = NotPending()
        else:
            raise unexpected(NAME, reply)
        return Replicated(result, confirmed)
