"""`Catalog`: the items for sale and their stock.

Items live in hashes (`catalog`: id -> JSON name and price; `stock`: id -> units on hand;
`stock:reserved`: id -> units held by pending checkouts) so that the checkout scripts can
change them with `HINCRBY`. An item's `stock` as the API shows it is what can be bought:
on hand minus reserved. An admin's absolute set changes only what is on hand (see
`OrderStore` for why that conserves units). The full listing is served through
the cache-aside `Cache` with a short TTL; a single item is always read through, so its stock
is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from redis.asyncio import Redis

from cartlib.store.availability import Availability
from cartlib.store.cache import Cache
from cartlib.store.errors import ItemNotFound
from cartlib.store.keys import Keys
from cartlib.store.redis import call
from cartlib.store.scripts.get_item import GetItem
from cartlib.store.scripts.list_items import ListItems
from cartlib.store.scripts.put_item import PutItem

_LISTING = "all"


class ItemSpec(Protocol):
    """An item as written to the catalog, validated by the caller (the web layer's `ItemIn`)."""

    @property
    def name(self) -> str: ...

    @property
    def price_cents(self) -> int: ...

    @property
    def stock(self) -> int: ...


class Catalog:
    """Reads and writes catalog items; reads return JSON bytes ready to send.

    **Parameters:**

    * **redis** - the client from `create_redis()`.
    * **keys** - the key layout.
    * **cache** - where the full listing is cached.
    * **listing_ttl_seconds** - how stale the cached listing may be.
    * **cluster** - cluster mode: keep an in-process `availability` snapshot for the carts.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        cache: Cache,
        listing_ttl_seconds: float,
        cluster: bool = False,
    ) -> None:
        self.availability = (
            Availability(self._load_listing, ttl_seconds=listing_ttl_seconds) if cluster else None
        )
        self._redis = redis
        self._keys = keys
        self._cache = cache
        self._listing_ttl = listing_ttl_seconds
        self._put = PutItem(redis)
        self._get = GetItem(redis)
        self._list = ListItems(redis)

    async def list_json(self) -> bytes:
        """`{"items": [...]}`, sorted by id; up to `listing_ttl_seconds` stale."""
        return await self._cache.get_or_set(_LISTING, self._load_listing, self._listing_ttl)

    async def get_json(self, item_id: str) -> bytes:
        """One item with its exact stock (available: on hand minus reserved)."""
        keys = self._keys
        item = await self._get(
            catalog=keys.catalog, stock=keys.stock, reserved=keys.reserved, item_id=item_id
        )
        if item is None:
            raise ItemNotFound(f"Item {item_id!r} not found")
        return item

    async def put(self, item_id: str, item: ItemSpec) -> bytes:
        """Create or replace an item and set its units on hand (reserved ones included);
        returns it, its stock being what can be bought."""
        await self._write(item_id, item, keep_existing=False)
        await self._cache.invalidate(_LISTING)
        if self.availability is not None:
            self.availability.expire()
        return await self.get_json(item_id)

    async def seed(self, items: Iterable[tuple[str, ItemSpec]]) -> int:
        """Add the items that are not in the catalog yet; existing ones keep their stock.
        Returns how many were added."""
        added = 0
        for item_id, item in items:
            added += await self._write(item_id, item, keep_existing=True)
        if added:
            await self._cache.invalidate(_LISTING)
            if self.availability is not None:
                self.availability.expire()
        return added

    async def is_empty(self) -> bool:
        lines: int = await call("HLEN", self._redis.hlen(self._keys.catalog))
        return lines == 0

    async def _write(self, item_id: str, item: ItemSpec, *, keep_existing: bool) -> int:
        written = await self._put(
            catalog=self._keys.catalog,
            stock=self._keys.stock,
            item_id=item_id,
            name=item.name,
            price_cents=item.price_cents,
            on_hand=item.stock,
            keep_existing=keep_existing,
        )
        return int(written)

    async def _load_listing(self) -> bytes:
        keys = self._keys
        return await self._list(catalog=keys.catalog, stock=keys.stock, reserved=keys.reserved)
