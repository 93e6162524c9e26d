"""The Prometheus metrics of every storefront process, each defined once here.

With one uvicorn worker (the default) every value lives in this process's registry. With
more, `server.run()` first calls `use_multiprocess_dir()`, which points
`PROMETHEUS_MULTIPROC_DIR` at a directory the workers share: prometheus-client then keeps
each worker's values in files there, and `exposition()` (what `/metrics` answers) adds up
the files of every worker, whichever worker the scrape reaches.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)
from redis.asyncio import ConnectionPool

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client picks its value class from the environment when first imported: that
# choice, not the environment now, says whether this process writes to the shared files.
MULTIPROCESS: Final[bool] = values.ValueClass is not values.MutexValue
# How often each worker copies its pool's counts into the shared gauges (multiprocess only;
# a single process reads its pool at scrape time).
POOL_REFRESH_SECONDS: Final = 5.0

# Redis answers in well under a millisecond on a LAN; the low buckets keep that visible.
_REDIS_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)
_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

REDIS_COMMAND_DURATION = Histogram(
    "cartlib_redis_command_duration_seconds",
    "Time from sending a Redis command (or Lua script) to its parsed reply, retries included.",
    ["command"],
    buckets=_REDIS_BUCKETS,
)
REDIS_ERRORS = Counter(
    "cartlib_redis_errors_total",
    "Redis calls that failed, by command and redis-py error class.",
    ["command", "error"],
)
# Summed over the workers of a process, and only over live ones.
REDIS_POOL_CONNECTIONS = Gauge(
    "cartlib_redis_pool_connections",
    "Connections in the Redis pool by state (idle or in_use).",
    ["state"],
    multiprocess_mode="livesum",
)
REDIS_POOL_MAX_CONNECTIONS = Gauge(
    "cartlib_redis_pool_max_connections",
    "The most connections the Redis pool may open.",
    multiprocess_mode="livesum",
)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "handler", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "handler"],
    buckets=_HTTP_BUCKETS,
)

CART_ITEMS_ADDED = Counter(
    "cartlib_cart_items_added", "Units of items added to carts (sum of quantities)."
)
CHECKOUT_OUTCOMES: Final = ("paid", "empty", "insufficient_stock", "declined", "error")
CHECKOUTS = Counter(
    "cartlib_checkouts",
    "Checkouts by outcome: paid, empty, insufficient_stock, declined, error. "
    "Each checkout counts once; an Idempotency-Key replay does not count again.",
    ["outcome"],
)
# Every outcome exists from the start at 0, so a ratio over outcomes has a series before
# the first failure.
CHECKOUTS_BY_OUTCOME: Final = {outcome: CHECKOUTS.labels(outcome) for outcome in CHECKOUT_OUTCOMES}
CHECKOUT_REPLAYS = Counter(
    "cartlib_checkout_replays",
    "Checkout requests with an Idempotency-Key seen before (the remembered response, or the "
    "checkout of that key finished when it was cut off); not counted in "
    "cartlib_checkouts_total.",
)
CHECKOUTS_EXPIRED = Counter(
    "cartlib_checkouts_expired",
    "Pending checkouts cancelled past CHECKOUT_TIMEOUT_SECONDS, their stock given back. Each "
    "is logged with its order id: its payment may have gone through (reconcile it).",
)
WAIT_STEPS: Final = ("checkout", "replay")
WAIT_SHORTFALLS = Counter(
    "cartlib_wait_shortfalls",
    "Paid orders answered 503 because WAIT confirmed fewer replicas than REDIS_WAIT_REPLICAS: "
    "at checkout, or at a replay of its Idempotency-Key that re-checks them.",
    ["step"],
)
WAIT_SHORTFALLS_BY_STEP: Final = {step: WAIT_SHORTFALLS.labels(step) for step in WAIT_STEPS}
ORDER_VALUE = Histogram(
    "cartlib_order_value_cents",
    "Total of each paid order, in cents.",
    buckets=(500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000),
)
# `cache`, not `namespace`: in Kubernetes, Prometheus gives every series a `namespace`
# target label, which would push ours aside to `exported_namespace`.
CACHE_REQUESTS = Counter(
    "cartlib_cache_requests",
    "Cache-aside lookups by cache (its namespace) and result (hit or miss).",
    ["cache", "result"],
)
# A gauge, not an Info: multiprocess mode has no Info. `service_name`, not `service`: the
# Prometheus Operator gives every series a `service` target label.
BUILD_INFO = Gauge(
    "storefront_build_info",
    "Always 1; labelled with the service and its version.",
    ["service_name", "version"],
    multiprocess_mode="max",
)

_pool: ConnectionPool | None = None


def watch_pool(pool: ConnectionPool) -> None:
    """Expose `pool` as the `cartlib_redis_pool_*` gauges (the latest pool replaces the last)."""
    global _pool
    _pool = pool
    refresh_pool_gauges()


def refresh_pool_gauges() -> None:
    """Copy the watched pool's connection counts into its gauges."""
    if _pool is None:
        return
    idle, in_use = (count for count, _ in _pool.get_connection_count())
    REDIS_POOL_CONNECTIONS.labels("idle").set(idle)
    REDIS_POOL_CONNECTIONS.labels("in_use").set(in_use)
    REDIS_POOL_MAX_CONNECTIONS.set(_pool.max_connections)


async def keep_pool_gauges_fresh(interval: float = POOL_REFRESH_SECONDS) -> None:
    """Refresh the pool gauges every `interval` seconds (a worker's task in multiprocess
    mode, where a scrape reads the other workers' values from their files)."""
    while True:
        refresh_pool_gauges()
        await asyncio.sleep(interval)


def exposition() -> bytes:
    """The body of a `/metrics` scrape: this process's metrics, or every worker's."""
    refresh_pool_gauges()
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    directory = os.environ[MULTIPROC_DIR_ENV]
    _forget_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def forget_this_process() -> None:
    """At a worker's shutdown: drop its live gauges (pool sizes) from the shared files.
    Its counters stay, so totals do not go down when a worker stops."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid(), os.environ[MULTIPROC_DIR_ENV])  # type: ignore[no-untyped-call]


def _forget_dead_workers(directory: str) -> None:
    # uvicorn replaces a worker that died without shutting down (killed, out of memory)
    # and offers no hook for it: find the live gauges of processes that are gone.
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's
        return True
    return True


def use_multiprocess_dir(configured: str | None, *, workers: int) -> Path | None:
    """Before uvicorn starts its workers: point `PROMETHEUS_MULTIPROC_DIR` at a directory
    for their metric files, or leave single-process mode alone (one worker, none configured).

    A `configured` directory is created if missing and emptied of other processes' files
    (they hold the counts of an earlier start). Otherwise a new directory is made under the
    temporary directory (`$TMPDIR`, else `/tmp`: writable under a read-only root filesystem)
    and removed when this process exits.
    """
    if configured is None and workers == 1:
        return None
    if configured is not None:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        own = f"_{os.getpid()}"
        for stale in directory.glob("*.db"):
            if not stale.stem.endswith(own):  # this process's own files are in use
                stale.unlink(missing_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="storefront-metrics-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    return directory
