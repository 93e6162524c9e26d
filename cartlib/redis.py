"""Building the Redis client, and the one wrapper every Redis call goes through.

`call()` times each command for Prometheus and turns redis-py's exceptions into
cartlib's, so no redis-py error ever reaches a route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from functools import cache
from time import perf_counter
from typing import Any

from prometheus_client.metrics import Histogram
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from cartlib import metrics
from cartlib.errors import CartError, StoreError, StoreUnavailable
from cartlib.settings import Settings

# Errors that mean "Redis cannot serve this now": the caller should answer 503 and retry later.
# ReadOnlyError is what a demoted master answers during a failover; with Sentinel, redis-py
# turns it into a ConnectionError, and "no master known" is MasterNotFoundError, a
# ConnectionError too.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, auth errors
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # includes MasterDownError
)


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool with the waiting of `BlockingConnectionPool`.

    `SentinelConnectionPool` derives from the plain `ConnectionPool`, which raises at once
    when all connections are in use; standalone, a request waits up to REDIS_POOL_TIMEOUT for
    a free one instead. Putting `BlockingConnectionPool` after `SentinelConnectionPool` in the
    bases keeps the Sentinel parts (master discovery, dropping connections to a demoted master)
    and takes `get_connection`/`release` from the blocking pool: neither Sentinel class
    overrides those two.
    """

    async def aclose(self) -> None:
        """Close the pool and the connections to the sentinels, which the pool's `Sentinel`
        holds and redis-py leaves open (`Redis.aclose()` closes only the pool)."""
        await super().aclose()
        await self.sentinel_manager.aclose()


def create_redis(settings: Settings) -> Redis:
    """A client with a bounded pool, timeouts, and bounded retries of connection errors:
    through Sentinel when REDIS_SENTINELS is set, else to the server at REDIS_URL."""
    retry = Retry(
        ExponentialWithJitterBackoff(
            base=settings.redis_backoff_base, cap=settings.redis_backoff_cap
        ),
        retries=settings.redis_retries,
        # Not TimeoutError: a command that timed out may have run; running an increment twice
        # is wrong. A refused or reset connection is retried (with Sentinel, also "no master
        # known yet" during a failover: MasterNotFoundError is a ConnectionError).
        supported_errors=(redis_errors.ConnectionError,),
    )
    options: dict[str, Any] = {
        "max_connections": settings.redis_max_connections,
        "timeout": settings.redis_pool_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
        "socket_timeout": settings.redis_socket_timeout,
        "socket_keepalive": True,
        "health_check_interval": 30,
        "retry": retry,
        "client_name": "storefront",
    }
    # What REDIS_URL says (host, port, db, user, password, TLS), as `from_url` would read it.
    from_url: dict[str, Any] = dict(parse_url(settings.redis_url.get_secret_value()))
    if settings.redis_password is not None:
        from_url["password"] = settings.redis_password.get_secret_value()
    pool: ConnectionPool
    if settings.uses_sentinel:
        pool = _sentinel_pool(settings, options, from_url)
    else:
        pool = BlockingConnectionPool(**{**options, **from_url})
    metrics.watch_pool(pool)
    return Redis.from_pool(pool)


def _sentinel_pool(
    settings: Settings, options: dict[str, Any], from_url: dict[str, Any]
) -> BlockingSentinelConnectionPool:
    """The master's pool, found through the sentinels. From REDIS_URL only the database,
    user and password apply: the sentinels say where the master is."""
    if "connection_class" in from_url:  # rediss:// or unix://
        raise ValueError("REDIS_SENTINELS works with a redis:// REDIS_URL only (no TLS, no socket)")
    sentinel_password = settings.redis_sentinel_password
    # redis-py's sentinel module has no type hints.
    sentinels = Sentinel(  # type: ignore[no-untyped-call]
        list(settings.redis_sentinels),
        sentinel_kwargs={
            "password": sentinel_password.get_secret_value() if sentinel_password else None,
            "socket_connect_timeout": settings.redis_connect_timeout,
            "socket_timeout": settings.redis_socket_timeout,
            # Asking the next sentinel is the retry: a dead one must not cost backoff too.
            "retry": Retry(NoBackoff(), retries=0),
            "client_name": "storefront-sentinel-client",
        },
    )
    master_options = {
        key: value for key, value in from_url.items() if key in ("db", "username", "password")
    }
    return BlockingSentinelConnectionPool(  # type: ignore[no-untyped-call]
        settings.redis_sentinel_master, sentinels, **options, **master_options
    )


def translated(exc: redis_errors.RedisError) -> CartError:
    """The cartlib error for a redis-py error: `StoreUnavailable` (503) or `StoreError`."""
    if isinstance(exc, UNAVAILABLE_ERRORS) or _is_busy(exc):
        return StoreUnavailable()
    return StoreError()


def _is_busy(exc: redis_errors.RedisError) -> bool:
    # "BUSY Redis is busy running a script": another client's script has run past
    # busy-reply-threshold, and Redis answers everyone else BUSY until it ends or SCRIPT KILL.
    # redis-py has no class for it (a plain ResponseError), yet it means "try again shortly".
    # The space keeps out BUSYKEY and BUSYGROUP, which are real errors.
    return type(exc) is redis_errors.ResponseError and str(exc).startswith("BUSY ")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise redis-py errors as cartlib errors (see `translated`), `from` the original."""
    try:
        yield
    except redis_errors.RedisError as exc:
        raise translated(exc) from exc


@cache
def _duration_of(command: str) -> Histogram:
    # Resolving a labelled child costs a lock and a dict lookup; the set of commands is small
    # and fixed, so resolve each once.
    return metrics.REDIS_COMMAND_DURATION.labels(command)


async def call(command: str, awaitable: Awaitable[Any]) -> Any:
    """Await one Redis call, recording its duration and errors under the label `command`.

    `command` is the Redis command name (`HGETALL`) or `script:<name>` for a Lua script.
    The reply is `Any`: redis-py types replies as `bytes | str`, but this client never
    decodes them, so callers annotate the bytes they get.
    """
    started = perf_counter()
    # Plain try/except rather than `translate_errors()`: a generator-based context manager
    # costs about a microsecond per call, and this runs on every Redis call.
    try:
        return await awaitable
    except redis_errors.RedisError as exc:
        metrics.REDIS_ERRORS.labels(command, type(exc).__name__).inc()
        raise translated(exc) from exc
    finally:
        _duration_of(command).observe(perf_counter() - started)
