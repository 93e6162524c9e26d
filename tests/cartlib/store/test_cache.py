from __future__ import annotations

import asyncio

import pytest
from prometheus_client import REGISTRY
from redis.asyncio import Redis

from cartlib.store.cache import Cache
from cartlib.store.keys import Keys


def cache_count(namespace: str, result: str) -> float:
    labels = {"cache": namespace, "result": result}
    return REGISTRY.get_sample_value("cartlib_cache_requests_total", labels) or 0.0


class CountingLoader:
    def __init__(self, value: bytes = b"value", delay: float = 0.0) -> None:
        self.value = value
        self.delay = delay
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        await asyncio.sleep(self.delay)
        return self.value


@pytest.fixture
async def cache(raw_redis: Redis) -> Cache:
    return Cache(raw_redis, keys=Keys(), namespace="test")


async def test_a_miss_loads_and_stores_with_the_ttl_then_hits(
    cache: Cache, raw_redis: Redis
) -> None:
    loader = CountingLoader(b"catalog")
    hits, misses = cache_count("test", "hit"), cache_count("test", "miss")
    assert await cache.get_or_set("k", loader, ttl_seconds=30) == b"catalog"
    assert await cache.get_or_set("k", loader, ttl_seconds=30) == b"catalog"
    assert loader.calls == 1
    assert cache_count("test", "miss") == misses + 1
    assert cache_count("test", "hit") == hits + 1
    entry = Keys().cache("test", "k")
    assert await raw_redis.get(entry) == b"catalog"
    assert 0 < await raw_redis.pttl(entry) <= 30_000


async def test_invalidate_makes_the_next_call_load_again(cache: Cache) -> None:
    loader = CountingLoader()
    await cache.get_or_set("k", loader, ttl_seconds=30)
    await cache.invalidate("k")
    await cache.get_or_set("k", loader, ttl_seconds=30)
    assert loader.calls == 2


async def test_an_expired_entry_is_loaded_again(cache: Cache, raw_redis: Redis) -> None:
    loader = CountingLoader()
    await cache.get_or_set("k", loader, ttl_seconds=30)
    await raw_redis.pexpire(Keys().cache("test", "k"), 1)
    await asyncio.sleep(0.05)
    await cache.get_or_set("k", loader, ttl_seconds=30)
    assert loader.calls == 2


async def test_concurrent_misses_in_one_process_load_once(cache: Cache) -> None:
    loader = CountingLoader(delay=0.05)
    values = await asyncio.gather(*(cache.get_or_set("k", loader, 30) for _ in range(50)))
    assert values == [b"value"] * 50
    assert loader.calls == 1


async def test_concurrent_misses_across_processes_load_once(redis_url: str) -> None:
    # Each Cache with its own client stands for one service process.
    clients = [Redis.from_url(redis_url) for _ in range(4)]
    caches = [Cache(client, keys=Keys(), namespace="test") for client in clients]
    loaders = [CountingLoader(delay=0.1) for _ in caches]
    try:
        values = await asyncio.gather(
            *(
                cache.get_or_set("k", loader, 30)
                for cache, loader in zip(caches, loaders, strict=True)
                for _ in range(10)
            )
        )
    finally:
        for client in clients:
            await client.aclose()
    assert set(values) == {b"value"}
    assert sum(loader.calls for loader in loaders) == 1


async def test_a_failing_loader_is_not_cached_and_releases_the_lock(
    cache: Cache, raw_redis: Redis
) -> None:
    async def failing() -> bytes:
        raise RuntimeError("database down")

    with pytest.raises(RuntimeError):
        await cache.get_or_set("k", failing, 30)
    assert await raw_redis.exists(Keys().cache("test", "k"), Keys().cache_lock("test", "k")) == 0
    assert await cache.get_or_set("k", CountingLoader(b"later"), 30) == b"later"


async def test_a_waiter_loads_itself_when_the_lock_holder_never_finishes(
    raw_redis: Redis,
) -> None:
    cache = Cache(raw_redis, keys=Keys(), namespace="test", lock_seconds=0.2)
    await raw_redis.set(Keys().cache_lock("test", "k"), "a-process-that-died", px=60_000)
    loader = CountingLoader()
    assert await cache.get_or_set("k", loader, 30) == b"value"
    assert loader.calls == 1
