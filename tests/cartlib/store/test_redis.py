"""Every redis-py error becomes a cartlib error; Redis calls are measured."""

from __future__ import annotations

import inspect

import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from redis import exceptions as redis_errors
from redis.asyncio import Redis

from cartlib.store.errors import CartError, StoreError, StoreUnavailable
from cartlib.store.redis import UNAVAILABLE_ERRORS, call, create_redis, translate_errors
from cartlib.store.stores import Stores
from cartlib.web.metrics import exposition
from tests.cartlib.conftest import StockItem, make_settings

REDIS_ERROR_CLASSES = sorted(
    (
        cls
        for _, cls in inspect.getmembers(redis_errors, inspect.isclass)
        if issubclass(cls, redis_errors.RedisError)
    ),
    key=lambda cls: cls.__name__,
)


@pytest.mark.parametrize("error_class", REDIS_ERROR_CLASSES, ids=lambda cls: cls.__name__)
def test_every_redis_error_is_translated(error_class: type[Exception]) -> None:
    expected = StoreUnavailable if issubclass(error_class, UNAVAILABLE_ERRORS) else StoreError
    with pytest.raises(CartError) as caught, translate_errors():
        raise error_class("1 127.0.0.1:6379")  # the shape AskError and MovedError parse
    assert type(caught.value) is expected
    assert isinstance(caught.value.__cause__, error_class)


def test_failover_and_loading_errors_mean_unavailable() -> None:
    for error_class in (
        redis_errors.ReadOnlyError,
        redis_errors.BusyLoadingError,
        redis_errors.ConnectionError,
        redis_errors.TimeoutError,
    ):
        assert issubclass(error_class, UNAVAILABLE_ERRORS)


async def test_a_master_without_enough_replicas_refuses_writes_with_503(
    stores: Stores, stock_item: StockItem, raw_redis: Redis
) -> None:
    """`min-replicas-to-write` (the chart sets it in sentinel mode): a master without enough
    good replicas answers NOREPLICAS to writes, inside scripts too. That means "try again
    shortly": 503, like BUSY, not a 500 (a plain ResponseError in redis-py: StoreError
    before). Reads go on; nothing is written."""
    await stock_item("noreplicas-mug", stock=5)
    await stores.carts.add("noreplicas-session", "noreplicas-mug", 1)
    labels = {"command": "script:add_item", "error": "ResponseError"}
    before = sample("cartlib_redis_errors_total", **labels)
    one_unit = await stores.carts.get("noreplicas-session")
    await raw_redis.config_set("min-replicas-to-write", 1)
    try:
        with pytest.raises(StoreUnavailable):
            await stores.carts.add("noreplicas-session", "noreplicas-mug", 1)
        cart = await stores.carts.get("noreplicas-session")
    finally:
        await raw_redis.config_set("min-replicas-to-write", 0)
    assert cart == one_unit
    assert sample("cartlib_redis_errors_total", **labels) == before + 1
    await stores.carts.add("noreplicas-session", "noreplicas-mug", 1)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_calls_and_scripts_are_timed_by_command(stores: Stores) -> None:
    before_ping = sample("cartlib_redis_command_duration_seconds_count", command="PING")
    before_script = sample(
        "cartlib_redis_command_duration_seconds_count", command="script:get_cart"
    )
    await stores.ping()
    await stores.carts.get("session-0001")
    assert sample("cartlib_redis_command_duration_seconds_count", command="PING") == before_ping + 1
    assert (
        sample("cartlib_redis_command_duration_seconds_count", command="script:get_cart")
        == before_script + 1
    )


async def test_a_refused_connection_is_unavailable_and_counted() -> None:
    # Port 1 on loopback refuses at once: what a stopped Redis looks like.
    redis = create_redis(make_settings("redis://127.0.0.1:1/0", redis_retries=1))
    labels = {"command": "PING", "error": "ConnectionError"}
    before = sample("cartlib_redis_errors_total", **labels)
    try:
        with pytest.raises(StoreUnavailable):
            await call("PING", redis.ping())
    finally:
        await redis.aclose()
    assert sample("cartlib_redis_errors_total", **labels) == before + 1


async def test_the_pool_is_exported_as_gauges(stores: Stores) -> None:
    await stores.ping()
    scraped = {
        (sample.name, sample.labels.get("state")): sample.value
        for family in text_string_to_metric_families(exposition().decode())
        for sample in family.samples
    }
    max_connections = scraped["cartlib_redis_pool_max_connections", None]
    assert max_connections == stores.settings.redis_max_connections
    idle = scraped["cartlib_redis_pool_connections", "idle"]
    in_use = scraped["cartlib_redis_pool_connections", "in_use"]
    assert idle + in_use >= 1
