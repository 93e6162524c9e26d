"""What several scripts' wrappers share: the lines of a cart or an order, the remembered
checkout response and the Idempotency-Key record, the replies more than one script gives,
and the argument groups that the standalone and cluster checkout scripts share (the
`begin_args` and `cancel_args` of checkout_prelude.lua).

Replies are parsed here, once: a caller gets frozen dataclasses, never bytes or positions.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, NewType, TypeVar

import orjson

from cartlib.store.errors import StoreError
from cartlib.store.scripts import ScriptArg

# JSON a script built, passed through to an HTTP answer as it is.
Json = NewType("Json", bytes)

# A record starts with the fingerprint of its request: 32 hex digits and "|".
FINGERPRINT_LENGTH = 32
_IN_FLIGHT = b"pending:"


@dataclass(frozen=True, slots=True)
class Line:
    id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class PricedLine:
    id: str
    quantity: int
    price_cents: int


@dataclass(frozen=True, slots=True)
class ShortLine:
    id: str
    requested: int
    available: int


@dataclass(frozen=True, slots=True)
class Reservation:
    """An order's lines as reserved, priced from the catalog, and their total."""

    lines: tuple[PricedLine, ...]
    total_cents: int

    def unpriced(self) -> tuple[Line, ...]:
        return tuple(Line(line.id, line.quantity) for line in self.lines)

    def items_json(self) -> bytes:
        return orjson.dumps(
            [
                {"id": line.id, "quantity": line.quantity, "price_cents": line.price_cents}
                for line in self.lines
            ]
        )


@dataclass(frozen=True, slots=True)
class FinishedCheckout:
    """A finished checkout as the response to send, and to replay for its key."""

    status_code: int
    body: bytes

    def remembered(self) -> bytes:
        return orjson.dumps({"status_code": self.status_code, "body": orjson.Fragment(self.body)})

    @classmethod
    def recall(cls, remembered: bytes) -> FinishedCheckout:
        record = orjson.loads(remembered)
        return cls(record["status_code"], orjson.dumps(record["body"]))


@dataclass(frozen=True, slots=True)
class InFlight:
    """A key whose checkout is unfinished: the record names its order."""

    order_id: str


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """An Idempotency-Key record: `<fingerprint>|pending:<order id>` while its checkout runs,
    then `<fingerprint>|<remembered response>`."""

    fingerprint: str
    state: InFlight | FinishedCheckout
    stored: bytes  # as Redis holds it: what resume_checkout compares, what a replay rewrites

    @classmethod
    def parse(cls, stored: bytes) -> KeyRecord:
        fingerprint, rest = split_record(stored)
        state: InFlight | FinishedCheckout = (
            InFlight(rest[len(_IN_FLIGHT) :].decode())
            if rest.startswith(_IN_FLIGHT)
            else FinishedCheckout.recall(rest)
        )
        return cls(fingerprint.decode(), state, stored)


def split_record(record: bytes) -> tuple[bytes, bytes]:
    """An Idempotency-Key record as (its request's fingerprint, what follows it)."""
    head, separator, rest = record.partition(b"|")
    if not (separator and len(head) == FINGERPRINT_LENGTH and head.isalnum()):
        raise StoreError("an Idempotency-Key record without its request's fingerprint")
    return head, rest


# --- replies that more than one script gives ----------------------------------------------


@dataclass(frozen=True, slots=True)
class Replay:
    """The Idempotency-Key was seen before: its record."""

    record: KeyRecord


@dataclass(frozen=True, slots=True)
class DeclinedTooOften:
    """The session's declined checkouts are at their limit (nothing written)."""

    retry_after_ms: int


@dataclass(frozen=True, slots=True)
class Empty:
    """The cart is empty (nothing written)."""


@dataclass(frozen=True, slots=True)
class Shortage:
    """Not enough stock for these lines (nothing reserved)."""

    lines: tuple[ShortLine, ...]


@dataclass(frozen=True, slots=True)
class NotPending:
    """The order is no longer pending: paid, or cancelled."""


@dataclass(frozen=True, slots=True)
class Cancelled:
    """The order is cancelled and its lines are back in the cart, but for `left_out` (the
    cart's caps); `remembered` is the response its key now answers (None: forgotten)."""

    left_out: tuple[Line, ...]
    remembered: FinishedCheckout | None


@dataclass(frozen=True, slots=True)
class Released:
    """The reservation is given back, or was, or is a tombstone: nothing is sold for it."""


@dataclass(frozen=True, slots=True)
class Committed:
    """The reservation's units are sold (saga step C ran)."""

    reservation: Reservation


R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Replicated(Generic[R]):
    """A write's result, and whether enough replicas acknowledged it (always true when no
    replica is wanted)."""

    result: R
    confirmed: bool


# --- argument groups shared by the standalone and cluster scripts -------------------------


@dataclass(frozen=True, slots=True)
class Opening:
    """ARGV of begin_checkout and saga_begin (`begin_args` in checkout_prelude.lua)."""

    order_id: str
    session_id: str
    now_ms: int
    idempotency_ttl_ms: int
    fingerprint: str
    max_declines: int  # 0: no limit

    def argv(self) -> list[ScriptArg]:
        return [
            self.order_id,
            self.session_id,
            self.now_ms,
            self.idempotency_ttl_ms,
            self.fingerprint,
            self.max_declines,
        ]


@dataclass(frozen=True, slots=True)
class Cancellation:
    """ARGV of cancel_checkout and saga_cancel (`cancel_args` in checkout_prelude.lua)."""

    order_id: str
    status: str  # declined, error, expired, out_of_stock, insufficient_stock
    cart_ttl_ms: int
    remember: FinishedCheckout | None  # None forgets the key: a retry runs anew
    remember_ttl_seconds: int
    keep_seconds: int  # how long the cancelled order is kept; 0 deletes it
    max_quantity: int
    max_lines: int
    decline_window_ms: int

    def argv(self) -> list[ScriptArg]:
        return [
            self.order_id,
            self.status,
            self.cart_ttl_ms,
            self.remember.remembered() if self.remember else "",
            self.remember_ttl_seconds,
            self.keep_seconds,
            self.max_quantity,
            self.max_lines,
            self.decline_window_ms,
        ]


# --- parsing ---------------------------------------------------------------------------------


def optional_key(key: str | None) -> list[str]:
    """An optional last KEYS entry (a script tests KEYS[n] for nil)."""
    return [key] if key else []


def lines(raw: bytes) -> tuple[Line, ...]:
    return tuple(Line(line["id"], line["quantity"]) for line in orjson.loads(raw))


def reservation(items: bytes, total: bytes) -> Reservation:
    return Reservation(
        tuple(
            PricedLine(line["id"], line["quantity"], line["price_cents"])
            for line in orjson.loads(items)
        ),
        int(total),
    )


def shortage(raw: bytes) -> Shortage:
    return Shortage(
        tuple(
            ShortLine(line["id"], line["requested"], line["available"])
            for line in orjson.loads(raw)
        )
    )


def cancelled(left_out: bytes, remembered: bytes) -> Cancelled:
    return Cancelled(lines(left_out), FinishedCheckout.recall(remembered) if remembered else None)


def unexpected(script: str, reply: Any) -> StoreError:
    return StoreError(f"unexpected reply from {script}: {reply!r}")
