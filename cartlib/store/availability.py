"""`Availability`: the units of each item that can be bought, as this process last read them.

In cluster mode the stock lives in another slot than the cart, and a cart script can only
touch its own slot; reading the stock first would make every add two round trips. So an add
checks the item and its stock against this in-process snapshot (one script on the stock
slot, read again when older than its TTL, by one caller while the others wait for it), and
the authoritative check is the checkout's reservation. When they disagree the customer sees
it at checkout: an add accepted on a stale figure is answered 409 with the shortage there,
and the cart is put back as it was.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import orjson

Loader = Callable[[], Awaitable[bytes]]


class Availability:
    """Item id -> units available (on hand minus reserved), at most `ttl_seconds` old.

    **Parameters:**

    * **loader** - returns the catalog listing, `{"items": [{"id", "stock", ...}]}`.
    * **ttl_seconds** - how stale the snapshot may be.
    """

    def __init__(self, loader: Loader, *, ttl_seconds: float) -> None:
        self._loader = loader
        self._ttl = ttl_seconds
        self._units: dict[str, int] = {}
        self._loaded_at = float("-inf")
        self._loading: asyncio.Future[None] | None = None

    async def units(self, item_id: str) -> int | None:
        """The units of `item_id` available; None if it is not in the catalog."""
        if time.monotonic() - self._loaded_at >= self._ttl:
            await self.refresh()
        return self._units.get(item_id)

    def expire(self) -> None:
        """Read it again at the next use (this process changed the catalog)."""
        self._loaded_at = float("-inf")

    def age(self) -> float:
        return time.monotonic() - self._loaded_at

    async def refresh(self) -> None:
        """Read the snapshot again (one load at a time; concurrent callers share it)."""
        if self._loading is None:
            self._loading = asyncio.ensure_future(self._load())
            self._loading.add_done_callback(self._loaded)
        await asyncio.shield(self._loading)

    def _loaded(self, _: asyncio.Future[None]) -> None:
        self._loading = None

    async def _load(self) -> None:
        listing = orjson.loads(await self._loader())
        self._units = {item["id"]: int(item["stock"]) for item in listing["items"]}
        self._loaded_at = time.monotonic()
