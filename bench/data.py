"""What the scenarios run on: a generated catalog, session tokens minted with the run's
secret, carts prefilled straight into Redis, and the data files the wrk scripts read."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import jwt
import redis

from cartlib.store.auth import ALGORITHM
from cartlib.store.keys import Keys

ITEM_COUNT = 600  # >= the 500 lines of a big cart
STOCK = 1_000_000_000  # the most ItemIn allows; a run sells far less
TOKEN_TTL_SECONDS = 24 * 3600
CART_TTL_MS = 7 * 24 * 3600 * 1000  # the services' default CART_TTL_SECONDS
_PIPELINE_BATCH = 500  # carts per pipelined batch when prefilling

KEYS = Keys()  # the services run with the default REDIS_KEY_PREFIX


def item_ids(count: int = ITEM_COUNT) -> list[str]:
    return [f"bench-{index:04d}" for index in range(count)]


def write_catalog(path: Path, count: int = ITEM_COUNT) -> Path:
    """A CATALOG_FILE for inventory to seed at startup: `count` items, huge stock."""
    items = [
        {"id": item_id, "name": f"Bench item {index}", "price_cents": 100 + index, "stock": STOCK}
        for index, item_id in enumerate(item_ids(count))
    ]
    path.write_text(json.dumps({"items": items}))
    return path


def write_shop_catalog(path: Path, stock: int = 1_000_000) -> Path:
    """The bundled badger shop (inventory/catalog.json) with `stock` units of every item, so
    that a load test does not sell out."""
    from inventory.seed import read_catalog

    items = [{**item.model_dump(), "stock": stock} for item in read_catalog(None).items]
    path.write_text(json.dumps({"items": items}))
    return path


def mint_tokens(secret: str, session_ids: Sequence[str]) -> list[str]:
    """Session tokens as `POST /sessions` makes them: HS256, `sub` = session id, `exp`."""
    now = int(time.time())
    expires = now + TOKEN_TTL_SECONDS
    return [
        jwt.encode({"sub": sid, "iat": now, "exp": expires}, secret, algorithm=ALGORITHM)
        for sid in session_ids
    ]


@dataclass(frozen=True)
class CartSet:
    """Carts of one scenario: one session (token) per cart, each holding `lines` items."""

    name: str
    tokens_file: Path
    items_file: Path
    carts: int
    lines: int


def make_carts(
    client: redis.Redis | redis.RedisCluster,
    secret: str,
    data_dir: Path,
    name: str,
    *,
    carts: int,
    lines: int,
    prefill: bool = True,
    keys: Keys = KEYS,
) -> CartSet:
    """`carts` sessions named `<name>-<n>`; with `prefill`, each cart holds one unit of each of
    the first `lines` items, written with pipelined HSET + PEXPIRE (as the scripts leave a
    cart) under `keys`' names (`ClusterKeys` and a cluster client for a cluster). Writes the
    tokens file and the items file the wrk scripts read."""
    session_ids = [f"{name}-{index:07d}" for index in range(carts)]
    tokens = mint_tokens(secret, session_ids)
    items = item_ids()[: max(lines, 1)]
    if prefill and lines:
        line_map = dict.fromkeys(items, 1)
        for start in range(0, carts, _PIPELINE_BATCH):
            pipe = client.pipeline(transaction=False)
            for sid in session_ids[start : start + _PIPELINE_BATCH]:
                key = keys.cart(sid)
                pipe.hset(key, mapping=line_map)  # type: ignore[arg-type]
                pipe.pexpire(key, CART_TTL_MS)
            pipe.execute()
    data_dir.mkdir(parents=True, exist_ok=True)
    tokens_file = data_dir / f"{name}.tokens"
    tokens_file.write_text("\n".join(tokens) + "\n")
    items_file = data_dir / f"{name}.items"
    items_file.write_text("\n".join(items) + "\n")
    return CartSet(name, tokens_file, items_file, carts, lines)
