"""Loads a default catalog into an empty store when the service starts."""

from __future__ import annotations

import logging
from importlib.resources import files
from pathlib import Path

from pydantic import BaseModel

from cartlib.store import Stores
from cartlib.web import ItemId, ItemIn

logger = logging.getLogger("storefront.inventory")


class CatalogItem(ItemIn):
    id: ItemId


class CatalogFile(BaseModel):
    items: list[CatalogItem]


def read_catalog(path: str | None) -> CatalogFile:
    """The catalog in `path`, or the bundled badger shop when `path` is None."""
    text = Path(path).read_text() if path else (files(__package__) / "catalog.json").read_text()
    return CatalogFile.model_validate_json(text, strict=False)


async def seed_catalog(stores: Stores) -> None:
    """Fill an empty catalog from CATALOG_FILE (or the bundled one); never overwrite stock."""
    if not await stores.catalog.is_empty():
        return
    catalog = read_catalog(stores.settings.catalog_file)
    added = await stores.catalog.seed((item.id, item) for item in catalog.items)
    logger.info("catalog seeded", extra={"items_added": added})
