"""The Prometheus metrics of the store: Redis calls, the Redis pool, carts, checkouts, the
cache. Each is defined once here; the HTTP ones and `/metrics` itself are in
`cartlib.web.metrics`.
"""

from __future__ import annotations

import asyncio
from typing import Final

from prometheus_client import Counter, Gauge, Histogram
from redis.asyncio import ConnectionPool

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
