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
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from cartlib import metrics
from cartlib.errors import CartError, StoreError, StoreUnavailable
from cartlib.settings import Settings

# Errors that mean "Redis cannot serve this now": the caller should answer 503 and retry later.
# ReadOnlyError is what a demoted master answers during a failover.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis_errors.ConnectionError,  # includes BusyLoadingError, MaxConnectionsError, auth errors
    redis_errors.TimeoutError,
    redis_errors.ReadOnlyError,
    redis_errors.OutOfMemoryError,
    redis_errors.TryAgainError,
    redis_errors.ClusterDownError,  # includes MasterDownError
)


def create_redis(settings: Settings) -> Redis:
    """A client with a bounded pool, timeouts, and bounded retries of connection errors."""
    retry = Retry(
        ExponentialWithJitterBackoff(
            base=settings.redis_backoff_base, cap=settings.redis_backoff_cap
        ),
        retries=settings.redis_retries,
        # Not TimeoutError: a command that timed out may have run; running an increment twice
        # is wrong. A refused or reset connection is retried.
        supported_errors=(redis_errors.ConnectionError,),
    )
    pool = BlockingConnectionPool.from_url(
        settings.redis_url.get_secret_value(),
        max_connections=settings.redis_max_connections,
        timeout=settings.redis_pool_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        socket_keepalive=True,
        health_check_interval=30,
        retry=retry,
        client_name="storefront",
    )
    metrics.watch_pool(pool)
    return Redis.from_pool(pool)


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
