"""`Cache`: cache-aside for values that are expensive to build, with stampede protection.

On a miss exactly one loader runs for a key, however many requests miss at once:
within a process, concurrent callers share one in-flight load; across processes, a short
Redis lock (`SET NX PX`) elects the loader while the others poll for its value, and load
themselves only if the holder has not finished within the lock's lifetime.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from cartlib.store import metrics
from cartlib.store.keys import Keys
from cartlib.store.redis import call
from cartlib.store.scripts.release_lock import ReleaseLock

Loader = Callable[[], Awaitable[bytes]]


class Cache:
    """Bytes in, bytes out, under `<prefix>cache:<namespace>:<key>`.

    **Parameters:**

    * **redis** - the client from `create_redis()`.
    * **keys** - the key layout.
    * **namespace** - groups entries, and labels the hit and miss counts.
    * **lock_seconds** - how long a loader may hold the lock; also how long others wait.
    * **poll_seconds** - how often a waiting process looks for the loader's value.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        keys: Keys,
        namespace: str,
        lock_seconds: float = 5.0,
        poll_seconds: float = 0.02,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.namespace = namespace
        self._lock_ms = int(lock_seconds * 1000)
        self._poll_seconds = poll_seconds
        self._in_flight: dict[str, asyncio.Future[bytes]] = {}
        self._release = ReleaseLock(redis)
        self._hits = metrics.CACHE_REQUESTS.labels(namespace, "hit")
        self._misses = metrics.CACHE_REQUESTS.labels(namespace, "miss")

    async def get_or_set(self, key: str, loader: Loader, ttl_seconds: float) -> bytes:
        """The cached value of `key`, or `await loader()` stored for `ttl_seconds`."""
        cached: bytes | None = await call(
            "GET", self._redis.get(self._keys.cache(self.namespace, key))
        )
        if cached is not None:
            self._hits.inc()
            return cached
        self._misses.inc()
        in_flight = self._in_flight.get(key)
        if in_flight is None:
            in_flight = asyncio.ensure_future(self._fill(key, loader, ttl_seconds))
            self._in_flight[key] = in_flight
            in_flight.add_done_callback(lambda _: self._in_flight.pop(key, None))
        # One caller giving up (a cancelled request) must not cancel the shared load.
        return await asyncio.shield(in_flight)

    async def invalidate(self, key: str) -> None:
        """Forget `key`; the next `get_or_set` loads it again."""
        await call("DEL", self._redis.delete(self._keys.cache(self.namespace, key)))

    async def _fill(self, key: str, loader: Loader, ttl_seconds: float) -> bytes:
        entry = self._keys.cache(self.namespace, key)
        lock = self._keys.cache_lock(self.namespace, key)
        token = secrets.token_hex(16)
        locked = await call("SET", self._redis.set(lock, token, nx=True, px=self._lock_ms))
        if not locked:
            loaded_elsewhere = await self._wait_for(entry)
            if loaded_elsewhere is not None:
                return loaded_elsewhere
        try:
            value = await loader()
            await call("SET", self._redis.set(entry, value, px=max(1, int(ttl_seconds * 1000))))
            return value
        finally:
            if locked:
                await self._release(lock=lock, token=token)

    async def _wait_for(self, entry: str) -> bytes | None:
        deadline = asyncio.get_running_loop().time() + self._lock_ms / 1000
        while asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(self._poll_seconds)
            value: bytes | None = await call("GET", self._redis.get(entry))
            if value is not None:
                return value
        return None
