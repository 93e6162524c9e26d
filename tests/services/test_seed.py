"""inventory fills an empty catalog when it starts, and never overwrites stock."""

from __future__ import annotations

from pathlib import Path

import httpx
import orjson

from inventory.seed import read_catalog
from tests._redis import LocalRedisContainer, flush
from tests.services._stack import start_service, stop_service


def items_of(url: str) -> dict[str, dict[str, object]]:
    return {item["id"]: item for item in httpx.get(f"{url}/items").json()["items"]}


def test_an_empty_catalog_gets_the_bundled_badger_shop(
    redis7_container: LocalRedisContainer,
) -> None:
    flush(redis7_container.url())
    inventory = start_service("inventory", redis7_container.url())
    try:
        listed = items_of(inventory.url)
    finally:
        stop_service(inventory)
    bundled = read_catalog(None).items
    assert set(listed) == {item.id for item in bundled}
    assert all(item_id.startswith("badger") for item_id in listed)


def test_catalog_file_is_loaded_and_existing_stock_is_kept(
    redis7_container: LocalRedisContainer, tmp_path: Path
) -> None:
    flush(redis7_container.url())
    catalog = tmp_path / "catalog.json"
    items = [{"id": "owl-mug", "name": "Owl Mug", "price_cents": 900, "stock": 4}]
    catalog.write_bytes(orjson.dumps({"items": items}))

    first = start_service("inventory", redis7_container.url(), CATALOG_FILE=str(catalog))
    try:
        assert items_of(first.url) == {"owl-mug": items[0]}
    finally:
        stop_service(first)

    items[0]["stock"] = 400
    catalog.write_bytes(orjson.dumps({"items": items}))
    second = start_service("inventory", redis7_container.url(), CATALOG_FILE=str(catalog))
    try:
        assert items_of(second.url)["owl-mug"]["stock"] == 4
    finally:
        stop_service(second)
