"""The Prometheus metrics of every storefront process, each defined once here."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client import Counter, Histogram, Info
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import REGISTRY, Collector
from redis.asyncio import ConnectionPool

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
CHECKOUTS = Counter(
    "cartlib_checkouts",
    "Checkout attempts by outcome: paid, empty, insufficient_stock, declined, error.",
    ["outcome"],
)
ORDER_VALUE = Histogram(
    "cartlib_order_value_cents",
    "Total of each paid order, in cents.",
    buckets=(500, 1000, 2500, 5000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000),
)
CACHE_REQUESTS = Counter(
    "cartlib_cache_requests",
    "Cache-aside lookups by namespace and result (hit or miss).",
    ["namespace", "result"],
)
BUILD_INFO = Info("storefront_build", "Version of the running storefront service.")


class PoolCollector(Collector):
    """Reports a connection pool's size when scraped, so the hot path pays nothing for it."""

    def __init__(self, pool: ConnectionPool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[GaugeMetricFamily]:
        connections = GaugeMetricFamily(
            "cartlib_redis_pool_connections",
            "Connections in the Redis pool by state (idle or in_use).",
            labels=["state"],
        )
        idle, in_use = (count for count, _ in self._pool.get_connection_count())
        connections.add_metric(["idle"], idle)
        connections.add_metric(["in_use"], in_use)
        yield connections
        yield GaugeMetricFamily(
            "cartlib_redis_pool_max_connections",
            "The most connections the Redis pool may open.",
            value=self._pool.max_connections,
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return ()  # names are fixed, but the values need a live pool: collect at scrape only


_pool_collector: PoolCollector | None = None


def watch_pool(pool: ConnectionPool) -> None:
    """Expose `pool` as the `cartlib_redis_pool_*` gauges (the latest pool replaces the last)."""
    global _pool_collector
    if _pool_collector is not None:
        REGISTRY.unregister(_pool_collector)
    _pool_collector = PoolCollector(pool)
    REGISTRY.register(_pool_collector)
