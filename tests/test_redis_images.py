"""The shared Redis fixtures give real, working, isolated servers of the expected versions."""

import pytest
import redis

from tests._redis import LocalRedisContainer, RestartableRedis, flush

COUNTER_SCRIPT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return n
"""


def _server_version(client: "redis.Redis") -> str:
    """The server's own version: Valkey reports a Redis-compatible `redis_version` (7.2.x)
    beside its `valkey_version`."""
    info = client.info("server")
    assert isinstance(info, dict)
    version: str = info["valkey_version"] if "valkey_version" in info else info["redis_version"]
    return version


def test_each_version_answers_and_runs_lua(redis_url: str, request: pytest.FixtureRequest) -> None:
    expected_prefix = {"redis7": "7.", "redis6.2": "6.2.", "valkey8": "8."}[
        request.node.callspec.id
    ]
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        assert client.ping() is True
        assert _server_version(client).startswith(expected_prefix)
        assert client.dbsize() == 0
        assert client.eval(COUNTER_SCRIPT, 1, "cart:count", 3, 60_000) == 3
        assert client.eval(COUNTER_SCRIPT, 1, "cart:count", 4, 60_000) == 7
        assert 0 < client.pttl("cart:count") <= 60_000
        client.set("leftover", "x")  # the next test must not see it
    finally:
        client.close()


def test_flush_empties_data_and_script_cache(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url, socket_timeout=5)
    try:
        assert client.dbsize() == 0
        client.set("k", "v", ex=60)
        client.select(3)
        client.set("k", "v")
        sha = client.script_load("return 1")
        assert client.script_exists(sha) == [True]

        flush(redis_url)  # what redis_url does before each test

        assert client.dbsize() == 0
        client.select(0)
        assert client.dbsize() == 0
        assert client.script_exists(sha) == [False]
    finally:
        client.close()


def test_redis7_url_is_redis_7(redis7_url: str) -> None:
    client = redis.Redis.from_url(redis7_url, socket_timeout=5)
    try:
        assert _server_version(client).startswith("7.")
        assert client.dbsize() == 0
    finally:
        client.close()


def test_session_containers_publish_on_loopback_only(
    redis7_container: LocalRedisContainer,
    redis62_container: LocalRedisContainer,
    valkey8_container: LocalRedisContainer,
) -> None:
    for container in (redis7_container, redis62_container, valkey8_container):
        assert container.url().startswith("redis://127.0.0.1:")
        wrapped = container.get_wrapped_container()
        wrapped.reload()
        bindings = wrapped.attrs["NetworkSettings"]["Ports"]["6379/tcp"]
        assert {binding["HostIp"] for binding in bindings} == {"127.0.0.1"}


@pytest.mark.parametrize("restartable_redis", ["7", "6.2", "valkey8"], indirect=True)
def test_restartable_redis_goes_down_and_comes_back(restartable_redis: RestartableRedis) -> None:
    server = restartable_redis
    client = server.client(socket_timeout=2, socket_connect_timeout=2)
    try:
        assert _server_version(client).startswith(f"{server.version.removeprefix('valkey')}.")
        client.set("k", "v")

        server.stop()
        assert server.status() == "exited"
        with pytest.raises(redis.ConnectionError):
            client.ping()

        server.start()
        assert client.ping() is True  # the same client reconnects to the same port
        assert client.get("k") is None  # no persistence: it comes back empty
        client.set("k", "v2")

        server.kill()
        with pytest.raises(redis.ConnectionError):
            client.get("k")
        server.start()
        assert client.get("k") is None

        server.pause()
        impatient = server.client(socket_timeout=0.3, socket_connect_timeout=0.3)
        try:
            with pytest.raises(redis.TimeoutError):
                impatient.ping()
        finally:
            impatient.close()
        server.unpause()
        assert client.ping() is True
    finally:
        client.close()
