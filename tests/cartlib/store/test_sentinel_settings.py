"""Sentinel and durability settings, and the client create_redis builds from them.

The deployment itself (sentinels, failover, WAIT) is tested in tests/reliability.
"""

from __future__ import annotations

import pytest
from prometheus_client import REGISTRY
from pydantic import ValidationError
from redis.asyncio import BlockingConnectionPool
from redis.asyncio.sentinel import MasterNotFoundError

from cartlib.settings import Settings
from cartlib.store.errors import StoreUnavailable
from cartlib.store.redis import (
    UNAVAILABLE_ERRORS,
    BlockingSentinelConnectionPool,
    call,
    create_redis,
)

GOOD_SECRET = "g" * 40
SENTINELS = "redis-0.redis:26379,redis-1.redis:26379, redis-2.redis:26379"


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.setenv("CART_TOKEN_SECRET", GOOD_SECRET)
    for name in (
        "REDIS_URL",
        "REDIS_SENTINELS",
        "REDIS_PASSWORD",
        "REDIS_SENTINEL_PASSWORD",
        "REDIS_WAIT_REPLICAS",
    ):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_standalone_by_default_without_wait(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_SENTINELS", "")  # what an empty chart value renders
    standalone = settings()
    assert not standalone.uses_sentinel
    assert standalone.wait_replicas == 0
    assert standalone.redis_sentinel_master == "storefront"


def test_sentinels_are_parsed_and_wait_for_one_replica(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_SENTINELS", SENTINELS + ",[fd00::1]:26380")
    env.setenv("REDIS_SENTINEL_MASTER", "shop")
    configured = settings()
    assert configured.redis_sentinels == (
        ("redis-0.redis", 26379),
        ("redis-1.redis", 26379),
        ("redis-2.redis", 26379),
        ("fd00::1", 26380),
    )
    assert configured.uses_sentinel
    assert configured.redis_sentinel_master == "shop"
    assert configured.wait_replicas == 1
    assert configured.redis_wait_timeout_ms == 500


def test_wait_can_be_set_or_turned_off(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_SENTINELS", SENTINELS)
    env.setenv("REDIS_WAIT_REPLICAS", "0")
    assert settings().wait_replicas == 0
    env.setenv("REDIS_WAIT_REPLICAS", "2")
    env.setenv("REDIS_WAIT_TIMEOUT_MS", "200")
    assert (settings().wait_replicas, settings().redis_wait_timeout_ms) == (2, 200)


@pytest.mark.parametrize(
    "value",
    ["redis-0", "redis-0:", ":26379", "redis-0:port", "redis-0:0", "redis-0:65536", "a:1,b"],
)
def test_malformed_sentinels_are_refused_by_name(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("REDIS_SENTINELS", value)
    with pytest.raises(ValidationError, match=r"redis_sentinels[\s\S]*is not host:port"):
        settings()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REDIS_WAIT_TIMEOUT_MS", "0"),  # WAIT 0 would block forever
        ("REDIS_WAIT_TIMEOUT_MS", "1000"),  # not below the 1 s socket timeout
        ("REDIS_WAIT_REPLICAS", "-1"),
    ],
)
def test_bad_durability_values_are_refused_by_name(
    env: pytest.MonkeyPatch, name: str, value: str
) -> None:
    env.setenv(name, value)
    with pytest.raises(ValidationError, match=name.lower()):
        settings()


@pytest.mark.usefixtures("env")
def test_an_empty_master_name_is_refused() -> None:
    # From the environment an empty value means unset (env_ignore_empty): the default.
    with pytest.raises(ValidationError, match="redis_sentinel_master"):
        Settings(_env_file=None, redis_sentinel_master="")  # type: ignore[call-arg]


async def test_passwords_never_show(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_SENTINELS", SENTINELS)
    env.setenv("REDIS_PASSWORD", "hunter2-redis")
    env.setenv("REDIS_SENTINEL_PASSWORD", "hunter2-sentinel")
    configured = settings()
    redis = create_redis(configured)
    try:
        assert "hunter2" not in repr(configured)
        assert "hunter2" not in repr(redis)
        assert "hunter2" not in repr(redis.connection_pool)
    finally:
        await redis.aclose()


async def test_the_sentinel_client_uses_both_passwords_and_the_url_database(
    env: pytest.MonkeyPatch,
) -> None:
    env.setenv("REDIS_SENTINELS", SENTINELS)
    env.setenv("REDIS_URL", "redis://:ignored@ignored-host:6379/3")
    env.setenv("REDIS_PASSWORD", "redis-password")
    env.setenv("REDIS_SENTINEL_PASSWORD", "sentinel-password")
    env.setenv("REDIS_MAX_CONNECTIONS", "7")
    env.setenv("REDIS_POOL_TIMEOUT", "0.25")
    redis = create_redis(settings())
    try:
        pool = redis.connection_pool
        assert isinstance(pool, BlockingSentinelConnectionPool)
        assert isinstance(pool, BlockingConnectionPool)  # waits for a free connection
        assert (pool.max_connections, pool.timeout) == (7, 0.25)
        assert pool.service_name == "storefront"
        kwargs = pool.connection_kwargs
        assert (kwargs["password"], kwargs["db"], kwargs["socket_timeout"]) == (
            "redis-password",
            3,
            1.0,
        )
        assert "host" not in kwargs  # the sentinels say where the master is
        sentinel_clients = pool.sentinel_manager.sentinels
        assert len(sentinel_clients) == 3
        for client in sentinel_clients:
            sentinel_kwargs = client.connection_pool.connection_kwargs
            assert sentinel_kwargs["password"] == "sentinel-password"
            # Asking the next sentinel is the retry.
            assert client.get_retry().get_retries() == 0
    finally:
        await redis.aclose()


async def test_redis_password_overrides_the_url_standalone(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_URL", "redis://:old-password@redis:6379/0")
    env.setenv("REDIS_PASSWORD", "new-password")
    redis = create_redis(settings())
    try:
        assert type(redis.connection_pool) is BlockingConnectionPool
        assert redis.connection_pool.connection_kwargs["password"] == "new-password"
        assert redis.connection_pool.connection_kwargs["host"] == "redis"
    finally:
        await redis.aclose()


def test_tls_with_sentinel_is_refused_clearly(env: pytest.MonkeyPatch) -> None:
    env.setenv("REDIS_SENTINELS", SENTINELS)
    env.setenv("REDIS_URL", "rediss://redis:6380/0")
    with pytest.raises(ValueError, match="REDIS_SENTINELS works with a redis:// REDIS_URL"):
        create_redis(settings())


def test_failover_errors_mean_unavailable() -> None:
    assert issubclass(MasterNotFoundError, UNAVAILABLE_ERRORS)


async def test_no_sentinel_answering_is_a_fast_503_that_names_no_secret(
    env: pytest.MonkeyPatch,
) -> None:
    # Port 1 refuses at once, as a sentinel that is down does.
    env.setenv("REDIS_SENTINELS", "127.0.0.1:1,127.0.0.1:1")
    env.setenv("REDIS_RETRIES", "1")
    env.setenv("REDIS_PASSWORD", "hunter2-redis")
    env.setenv("REDIS_SENTINEL_PASSWORD", "hunter2-sentinel")
    redis = create_redis(settings())
    labels = {"command": "PING", "error": "MasterNotFoundError"}
    before = REGISTRY.get_sample_value("cartlib_redis_errors_total", labels) or 0.0
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await call("PING", redis.ping())
    finally:
        await redis.aclose()
    assert REGISTRY.get_sample_value("cartlib_redis_errors_total", labels) == before + 1
    # The service logs the cause, which describes every sentinel it asked.
    cause = caught.value.__cause__
    assert isinstance(cause, MasterNotFoundError)
    assert "No master found for 'storefront'" in str(cause)
    assert "hunter2" not in f"{cause} {cause!r}"
