"""Building the Redis client, and the one wrapper every Redis call goes through.

`call()` times each command for Prometheus and turns redis-py's exceptions into
cartlib's, so no redis-py error ever reaches a route.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from functools import cache
from time import monotonic, perf_counter
from typing import Any, Final, cast

from prometheus_client.metrics import Histogram
from redis import exceptions as redis_errors
from redis.asyncio import BlockingConnectionPool, ConnectionPool, Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.connection import AbstractConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection
from redis.backoff import ExponentialWithJitterBackoff, NoBackoff

from cartlib.settings import Settings
from cartlib.store import metrics
from cartlib.store.errors import CartError, StoreError, StoreUnavailable

logger = logging.getLogger("storefront.redis")

# How often (at most) a Sentinel pool asks the sentinels where the master is, besides whenever
# it opens a connection: the bound on how long the services keep using a master that the
# sentinels have replaced but that is still up (see `BlockingSentinelConnectionPool`).
MASTER_CHECK_INTERVAL: Final = 1.0

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
    # Cluster: CLUSTERDOWN and MASTERDOWN (a failover under way), redirects that did not
    # settle (ClusterError), a slot no node serves yet, no seed node reachable.
    redis_errors.ClusterError,  # includes ClusterDownError, MasterDownError
    redis_errors.SlotNotCoveredError,
    redis_errors.RedisClusterUnreachableError,
)
# What a Redis call may raise: redis-py's cluster client raises the last two outside
# RedisError.
REDIS_ERRORS: Final = (
    redis_errors.RedisError,
    redis_errors.SlotNotCoveredError,
    redis_errors.RedisClusterUnreachableError,
)


class Sentinels(Sentinel):
    """redis-py's `Sentinel`, taking the master's address from SENTINEL GET-MASTER-ADDR-BY-NAME.

    redis-py reads it from SENTINEL MASTERS, where the sentinel that runs a failover keeps
    the old master's address until the failover ends (in the tests about 6 s after it
    promoted a replica), while GET-MASTER-ADDR-BY-NAME, the address Sentinel gives clients,
    names the promoted replica at once. When the old master is still up, those are seconds of
    writes that it acknowledges and drops when it becomes a replica.
    """

    async def discover_master(self, service_name: str) -> tuple[str, int]:
        # redis-py's checks (the master is not down, ...) with the first sentinel that answers,
        # and moves that sentinel to the front of the list.
        address: tuple[str, int] = await super().discover_master(service_name)
        try:
            current = await self.sentinels[0].execute_command(  # type: ignore[no-untyped-call]
                "SENTINEL GET-MASTER-ADDR-BY-NAME", service_name
            )
        except (redis_errors.ConnectionError, redis_errors.TimeoutError):
            return address
        if not current:
            return address
        host, port = current
        return (host.decode() if isinstance(host, bytes) else host), int(port)


class MasterConnection(SentinelManagedConnection):
    """A connection to the master that opens every socket, reconnections included, to the
    address the sentinels name at that moment.

    redis-py's `SentinelManagedConnection` asks the sentinels only in `connect()`, which the
    pool calls when it hands out a connection. A command's retry reconnects through
    `connect_check_health()` instead, to the host and port the connection had: after
    READONLY ("the previous master is now a slave") every retry went back to the demoted
    master, and a read on such a connection is answered by a replica, with no error.
    """

    async def connect_check_health(
        self, check_health: bool = True, retry_socket_connect: bool = True
    ) -> None:
        if not self.is_connected:
            self.host, self.port = await self.connection_pool.get_master_address()
        await super().connect_check_health(check_health, retry_socket_connect)

    async def _connect_retry(self) -> None:
        # redis-py's asks the sentinels here and again in connect_check_health (connect_to).
        if not self.is_connected:
            await self.connect_check_health(
                check_health=self.connection_pool.check_connection, retry_socket_connect=False
            )


class BlockingSentinelConnectionPool(SentinelConnectionPool, BlockingConnectionPool):
    """redis-py's Sentinel pool with the waiting of `BlockingConnectionPool`, and which leaves a
    replaced master even while it is still up.

    `SentinelConnectionPool` derives from the plain `ConnectionPool`, which raises at once
    when all connections are in use; standalone, a request waits up to REDIS_POOL_TIMEOUT for
    a free one instead. Putting `BlockingConnectionPool` after `SentinelConnectionPool` in the
    bases keeps the Sentinel parts (master discovery, dropping idle connections when the
    master's address changes) and takes `get_connection`/`release` from the blocking pool.

    A master that is demoted but stays up (`SENTINEL FAILOVER`, a hand-over before a pod
    stops, a healed partition) keeps answering: as a master until Sentinel reconfigures it
    (about 10 s after the sentinels named the new one: writes acknowledged there are then
    lost), then as a replica (READONLY to writes, stale answers to reads). So the pool asks the
    sentinels again at least every MASTER_CHECK_INTERVAL, and when the address changed, drops
    its idle connections (redis-py's `get_master_address`) and closes the busy ones as they
    come back (`release`): every later command goes to the new master.
    """

    _next_master_check = 0.0  # monotonic(); the first request asks at once

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        # One request in a MASTER_CHECK_INTERVAL asks first (two round trips to a sentinel);
        # the others do not wait for it. Standalone pools have no such check.
        if monotonic() >= self._next_master_check:
            await self._check_master()
        connection: AbstractConnection = await super().get_connection(  # type: ignore[no-untyped-call]
            *args, **kwargs
        )
        return connection

    async def _check_master(self) -> None:
        self._next_master_check = float("inf")  # one check at a time
        try:
            await self.get_master_address()
        except redis_errors.RedisError:
            # No sentinel answers now: keep using the connections there are. A new
            # connection asks the sentinels anyway, and fails as it would have.
            pass
        finally:
            self._next_master_check = monotonic() + MASTER_CHECK_INTERVAL

    async def get_master_address(self) -> tuple[str, int]:
        previous = self.master_address
        # redis-py's disconnects the idle connections when the address changed.
        address: tuple[str, int] = await super().get_master_address()  # type: ignore[no-untyped-call]
        if previous is not None and address != previous:
            logger.warning(
                "the sentinels name a new master for %s: %s:%s (was %s:%s)",
                self.service_name,
                *address,
                *previous,
            )
        return address

    async def release(self, connection: AbstractConnection) -> None:
        # A connection that was busy when the master moved is closed, not pooled.
        if (connection.host, connection.port) != self.master_address:  # type: ignore[attr-defined]
            connection.mark_for_reconnect()  # type: ignore[no-untyped-call]
        await super().release(connection)

    async def aclose(self) -> None:
        """Close the pool and the connections to the sentinels, which the pool's `Sentinel`
        holds and redis-py leaves open (`Redis.aclose()` closes only the pool)."""
        await super().aclose()
        await self.sentinel_manager.aclose()


class StoreCluster(RedisCluster):
    """redis-py's asyncio cluster client, retrying only what cannot have run.

    redis-py retries a command after a TimeoutError too, refreshing the topology; a script
    that timed out may have run, and running a cart increment twice is a lost-update bug of
    its own (as standalone, where only connection errors are retried). CLUSTERDOWN and an
    uncovered slot mean the command was refused: retried. MOVED, ASK and TRYAGAIN are
    redis-py's own redirect loop.
    """

    # A shorter tuple than redis-py's declared type (it types the tuple's exact members).
    ERRORS_ALLOW_RETRY = (  # type: ignore[assignment]
        redis_errors.ConnectionError,
        redis_errors.ClusterDownError,
        redis_errors.SlotNotCoveredError,
    )

    def __init__(self, *args: Any, pool_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # redis-py's cluster pools raise at once when a node's connections are all in use;
        # standalone, a request waits up to REDIS_POOL_TIMEOUT for one. The same here: at
        # most max_connections commands in flight, a newcomer waits for a free place.
        self._in_flight = asyncio.Semaphore(kwargs["max_connections"])
        self._pool_timeout = pool_timeout

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            await asyncio.wait_for(self._in_flight.acquire(), self._pool_timeout)
        except TimeoutError:
            raise redis_errors.MaxConnectionsError(
                "no free connection within REDIS_POOL_TIMEOUT"
            ) from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._in_flight.release()


def _connection_retry(settings: Settings) -> Retry:
    return Retry(
        ExponentialWithJitterBackoff(
            base=settings.redis_backoff_base, cap=settings.redis_backoff_cap
        ),
        retries=settings.redis_retries,
        # Not TimeoutError: a command that timed out may have run; running an increment twice
        # is wrong. A refused or reset connection is retried (with Sentinel, also "no master
        # known yet" during a failover: MasterNotFoundError is a ConnectionError).
        supported_errors=(redis_errors.ConnectionError,),
    )


def create_redis(settings: Settings) -> Redis:
    """A client with a bounded pool, timeouts, and bounded retries of connection errors:
    to the cluster of REDIS_CLUSTER_NODES, through Sentinel when REDIS_SENTINELS is set, else
    to the server at REDIS_URL."""
    retry = _connection_retry(settings)
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
    if settings.uses_cluster:
        return _cluster_client(settings, options, from_url)
    pool: ConnectionPool
    if settings.uses_sentinel:
        pool = _sentinel_pool(settings, options, from_url)
    else:
        pool = BlockingConnectionPool(**{**options, **from_url})
    metrics.watch_pool(pool)
    return Redis.from_pool(pool)


def _cluster_client(settings: Settings, options: dict[str, Any], from_url: dict[str, Any]) -> Redis:
    """The cluster client. From REDIS_URL only the user, password and TLS apply: the seeds
    say where the nodes are, and a cluster has database 0 only.

    Its pools are one per node, of `max_connections` each, and at most `max_connections`
    commands are in flight in all (see `StoreCluster`).
    The client serves the same commands as `Redis`, so the stores take it as one.
    """
    if from_url.get("db", 0) not in (0, "0"):
        raise ValueError("REDIS_CLUSTER_NODES works with database 0 only (REDIS_URL's /db)")
    tls = "connection_class" in from_url and from_url["connection_class"].__name__.startswith("SSL")
    seeds = [ClusterNode(host, port) for host, port in settings.redis_cluster_nodes]
    cluster = StoreCluster(
        startup_nodes=seeds,
        username=from_url.get("username"),
        password=from_url.get("password"),
        ssl=tls,
        max_connections=options["max_connections"],
        pool_timeout=options["timeout"],
        socket_connect_timeout=options["socket_connect_timeout"],
        socket_timeout=options["socket_timeout"],
        socket_keepalive=True,
        health_check_interval=options["health_check_interval"],
        retry=options["retry"],
        client_name=options["client_name"],
    )
    return cast(Redis, cluster)


def create_node_client(settings: Settings, host: str, port: int) -> Redis:
    """A plain client of one cluster node, for what must run on one connection to the master
    that owns a slot (a write and its WAIT: `cartlib.store.durability.ClusterReplicatedWrites`).
    Same timeouts, retries and TLS as the cluster client; a small blocking pool."""
    from_url: dict[str, Any] = dict(parse_url(settings.redis_url.get_secret_value()))
    if settings.redis_password is not None:
        from_url["password"] = settings.redis_password.get_secret_value()
    kept = {
        key: from_url[key]
        for key in ("username", "password", "connection_class")
        if key in from_url
    }
    pool = BlockingConnectionPool(
        host=host,
        port=port,
        max_connections=max(1, settings.redis_max_connections // 4),
        timeout=settings.redis_pool_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        socket_timeout=settings.redis_socket_timeout,
        socket_keepalive=True,
        retry=_connection_retry(settings),
        client_name="storefront",
        **kept,
    )
    return Redis.from_pool(pool)


def _sentinel_pool(
    settings: Settings, options: dict[str, Any], from_url: dict[str, Any]
) -> BlockingSentinelConnectionPool:
    """The master's pool, found through the sentinels. From REDIS_URL only the database,
    user and password apply: the sentinels say where the master is."""
    if "connection_class" in from_url:  # rediss:// or unix://
        raise ValueError("REDIS_SENTINELS works with a redis:// REDIS_URL only (no TLS, no socket)")
    sentinel_password = settings.redis_sentinel_password
    sentinels = Sentinels(
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
        settings.redis_sentinel_master,
        sentinels,
        connection_class=MasterConnection,
        **options,
        **master_options,
    )


def translated(exc: Exception) -> CartError:
    """The cartlib error for a redis-py error: `StoreUnavailable` (503) or `StoreError`."""
    if isinstance(exc, UNAVAILABLE_ERRORS) or _is_temporary_refusal(exc):
        return StoreUnavailable()
    return StoreError()


# Replies redis-py has no class for (plain ResponseErrors) that mean "try again shortly".
# "BUSY Redis is busy running a script": another client's script has run past
# busy-reply-threshold, and Redis answers everyone else BUSY until it ends or SCRIPT KILL.
# "NOREPLICAS Not enough good replicas to write.": min-replicas-to-write, a master whose
# replicas are gone refuses writes (inside a script too) until one is back.
# The spaces keep out BUSYKEY and BUSYGROUP, which are real errors.
_TEMPORARY_REFUSALS: Final = ("BUSY ", "NOREPLICAS ")


def _is_temporary_refusal(exc: Exception) -> bool:
    if type(exc) is not redis_errors.ResponseError:
        return False
    text = str(exc)
    # Redis 6.2 wraps a refusal inside a script: "Error running script (call to f_...):
    # @user_script:29: @user_script: 29: -NOREPLICAS Not enough good replicas to write."
    return text.startswith(_TEMPORARY_REFUSALS) or (
        text.startswith("Error running script") and " -NOREPLICAS " in text
    )


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raise redis-py errors as cartlib errors (see `translated`), `from` the original."""
    try:
        yield
    except REDIS_ERRORS as exc:
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
    except REDIS_ERRORS as exc:
        metrics.REDIS_ERRORS.labels(command, type(exc).__name__).inc()
        raise translated(exc) from exc
    finally:
        _duration_of(command).observe(perf_counter() - started)
