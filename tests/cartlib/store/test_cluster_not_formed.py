"""A cluster that serves no slot yet (its nodes up, the cluster not created: the order on
Kubernetes, where the services start before the chart's Job forms it) is a store that is
unavailable: 503 with Retry-After, so a deferred startup hook retries, never a raw
RedisClusterException (a 500, a service that exits at startup, a retry task that dies).

Found on the real cluster: inventory's catalog seeding died at "All slots are not covered"
and the shop had no items. A one-node cluster in Docker (`--network host`, a free loopback
port), first with no slot, then with all of them.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from cartlib.settings import Settings
from cartlib.store.errors import StoreUnavailable
from cartlib.store.redis import call, create_redis
from tests._cluster import free_node_ports
from tests._redis import REDIS7_IMAGE, require_docker

pytestmark = pytest.mark.docker


@pytest.fixture
def node() -> Iterator[tuple[str, int]]:
    """(container name, port) of a cluster-enabled Redis that owns no slot."""
    require_docker(REDIS7_IMAGE)
    (port,) = free_node_ports(1)  # and its cluster bus port, +10000
    name = f"storefront-unformed-{uuid.uuid4().hex[:8]}"
    subprocess.run(
        ["docker", "run", "--detach", "--name", name, "--network", "host", REDIS7_IMAGE,
         "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
         "--cluster-announce-ip", "127.0.0.1", "--save", ""],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while cli(name, port, "PING") != "PONG":
            assert time.monotonic() < deadline, "the node does not answer"
            time.sleep(0.2)
        yield name, port
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True)


def cli(name: str, port: int, *command: str) -> str:
    result = subprocess.run(
        ["docker", "exec", name, "redis-cli", "-p", str(port), *command],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return result.stdout.strip()


async def test_a_cluster_without_slots_is_unavailable_until_it_serves_them(
    node: tuple[str, int],
) -> None:
    name, port = node
    env = {"cart_token_secret": "u" * 40, "redis_cluster_nodes": f"127.0.0.1:{port}"}
    settings = Settings(_env_file=None, **env)  # type: ignore[call-arg, arg-type]
    redis = create_redis(settings)
    try:
        with pytest.raises(StoreUnavailable):
            await call("HLEN", redis.hlen("sf:{stock}:catalog"))
        assert cli(name, port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383") == "OK"
        deadline = time.monotonic() + 30
        while "cluster_state:ok" not in cli(name, port, "CLUSTER", "INFO"):
            assert time.monotonic() < deadline, "the one-node cluster is not ok"
            time.sleep(0.2)
        # The same client, once the slots are served: the refresh that failed is retried.
        assert await call("HLEN", redis.hlen("sf:{stock}:catalog")) == 0
    finally:
        await redis.aclose()
