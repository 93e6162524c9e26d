"""`Stores`: everything a service needs from Redis, built once per process from `Settings`."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from cartlib.settings import Settings
from cartlib.store.auth import SessionTokens
from cartlib.store.cache import Cache
from cartlib.store.carts import CartStore
from cartlib.store.catalog import Catalog
from cartlib.store.keys import ClusterKeys, Keys
from cartlib.store.orders import OrderStore
from cartlib.store.redis import call, create_node_client, create_redis
from cartlib.store.saga import ClusterOrderStore


@dataclass(frozen=True, slots=True)
class Stores:
    settings: Settings
    redis: Redis
    tokens: SessionTokens
    carts: CartStore
    catalog: Catalog
    orders: OrderStore

    @classmethod
    def from_settings(cls, settings: Settings, redis: Redis | None = None) -> Stores:
        redis = redis if redis is not None else create_redis(settings)
        cluster = settings.uses_cluster
        keys = (
            ClusterKeys(settings.redis_key_prefix) if cluster else Keys(settings.redis_key_prefix)
        )
        catalog = Catalog(
            redis,
            keys=keys,
            cache=Cache(redis, keys=keys, namespace="catalog"),
            listing_ttl_seconds=settings.catalog_cache_ttl_seconds,
            cluster=cluster,
        )
        order_options: dict[str, Any] = {
            "cart_ttl_seconds": settings.cart_ttl_seconds,
            "idempotency_ttl_seconds": settings.idempotency_ttl_seconds,
            "checkout_timeout_seconds": settings.checkout_timeout_seconds,
            "stream_maxlen": settings.orders_stream_maxlen,
            "wait_replicas": settings.wait_replicas,
            "wait_timeout_ms": settings.redis_wait_timeout_ms,
            "max_quantity": settings.cart_max_quantity,
            "max_lines": settings.cart_max_lines,
            "max_declines": settings.checkout_max_declines,
            "decline_window_seconds": settings.checkout_decline_window_seconds,
        }
        orders = (
            ClusterOrderStore(
                redis,
                keys=keys,
                node_client=functools.partial(create_node_client, settings),
                **order_options,
            )
            if isinstance(keys, ClusterKeys)
            else OrderStore(redis, keys=keys, **order_options)
        )
        return cls(
            settings=settings,
            redis=redis,
            tokens=SessionTokens(
                settings.cart_token_secret.get_secret_value(),
                ttl_seconds=settings.cart_ttl_seconds,
                cache_size=settings.cart_token_cache_size,
            ),
            carts=CartStore(
                redis,
                keys=keys,
                ttl_seconds=settings.cart_ttl_seconds,
                max_quantity=settings.cart_max_quantity,
                max_lines=settings.cart_max_lines,
                availability=catalog.availability,
            ),
            catalog=catalog,
            orders=orders,
        )

    async def ping(self) -> None:
        """Raise `StoreUnavailable` unless Redis answers."""
        await call("PING", self.redis.ping())

    async def aclose(self) -> None:
        await self.orders.aclose()
        await self.redis.aclose()
