"""What add_item.lua and set_item.lua share: where a line's stock comes from (the two cart
preludes, cart_stock_prelude.lua and cart_hint_prelude.lua), and their replies."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from cartlib.store.scripts import LuaScript, ScriptArg
from cartlib.store.scripts.shared import unexpected


@dataclass(frozen=True, slots=True)
class StockHashes:
    """Standalone and Sentinel: the script reads the stock hashes, exactly."""

    stock: str
    reserved: str


@dataclass(frozen=True, slots=True)
class StockHint:
    """Cluster (the stock is in another slot): the units available as the process last read
    them, None for an item it does not know."""

    units: int | None


StockSource = StockHashes | StockHint


@dataclass(frozen=True, slots=True)
class Changed:
    """The line's quantity now (0: removed) and the cart's number of lines."""

    quantity: int
    line_count: int


@dataclass(frozen=True, slots=True)
class UnknownItem:
    """Not in the catalog: nothing changed."""


@dataclass(frozen=True, slots=True)
class OverQuantityCap:
    """The line would exceed its cap; `in_cart` units are in the cart already."""

    in_cart: int


@dataclass(frozen=True, slots=True)
class OverStock:
    """Only `available` units can be bought."""

    available: int


@dataclass(frozen=True, slots=True)
class OverLineCount:
    """A new line would exceed the cart's cap on lines."""


CartWrite = Changed | UnknownItem | OverQuantityCap | OverStock | OverLineCount


class CartWriteScript:
    """One cart script in its two builds: with the stock hashes' prelude and the hint's."""

    def __init__(self, redis: Redis, name: str) -> None:
        self.name = name
        self._exact = LuaScript(redis, name, prelude=("stock_prelude", "cart_stock_prelude"))
        self._hinted = LuaScript(redis, name, prelude="cart_hint_prelude")

    async def run(self, cart: str, stock: StockSource, args: list[ScriptArg]) -> CartWrite:
        if isinstance(stock, StockHashes):
            reply = await self._exact([cart, stock.stock, stock.reserved], args)
        else:
            hint = -1 if stock.units is None else stock.units
            reply = await self._hinted([cart], [*args, hint])
        return self._parse(reply)

    def _parse(self, reply: list[Any]) -> CartWrite:
        # {'ok', quantity, line count} (integer replies) or {error, detail} (bytes).
        status, detail = reply[0], reply[1] if len(reply) > 1 else b""
        if status == b"ok":
            return Changed(int(reply[1]), int(reply[2]))
        if status == b"unknown_item":
            return UnknownItem()
        if status == b"quantity_cap":
            return OverQuantityCap(int(detail))
        if status == b"out_of_stock":
            return OverStock(int(detail))
        if status == b"too_many_lines":
            return OverLineCount()
        raise unexpected(self.name, reply)
