"""A Redis Cluster (or Valkey cluster) in Docker for the tests: three masters and three
replicas, with a password, created by `redis-cli --cluster create` as an operator would.

Every node runs with `--network host` on its own free 127.0.0.1 port (its cluster bus on
port + 10000) and announces 127.0.0.1: the addresses the nodes give each other in MOVED, ASK
and CLUSTER SLOTS are then ones a client on this machine reaches, as in production where
clients and nodes share a network. Only loopback traffic.
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import docker
import docker.errors
import redis
from docker.models.containers import Container
from redis.cluster import ClusterNode as SeedNode

from tests._redis import IMAGES, LOOPBACK, require_docker, wait_for_ping

BUS_PORT_OFFSET: Final = 10_000
NODE_TIMEOUT_MS: Final = 2000
READY_TIMEOUT: Final = 60.0


@dataclass
class ClusterNode:
    """One cluster node's container on 127.0.0.1:port."""

    name: str
    port: int
    password: str
    container: Container

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new synchronous client of this node alone (the caller closes it)."""
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, **kwargs}
        return redis.Redis(host=LOOPBACK, port=self.port, password=self.password, **options)

    def role(self) -> str:
        """`master` or `slave`, as the node says (ROLE)."""
        client = self.client()
        try:
            role: Any = client.role()
        finally:
            client.close()
        value = role[0]
        return value.decode() if isinstance(value, bytes) else str(value)

    def kill(self) -> None:
        """`docker kill`: SIGKILL, a crash."""
        self.container.kill()
        self.container.wait(timeout=30)

    def start(self) -> None:
        self.container.start()
        wait_for_ping(self.client, self.name, READY_TIMEOUT)


@dataclass
class ClusterDeployment:
    version: str
    nodes: list[ClusterNode]
    password: str
    _docker: docker.DockerClient = field(repr=False)

    @property
    def seeds(self) -> str:
        """REDIS_CLUSTER_NODES for the services: every node, comma-separated."""
        return ",".join(node.address for node in self.nodes)

    def client(self, **kwargs: Any) -> redis.RedisCluster:
        """A new synchronous cluster client (the caller closes it). redis-py's cluster
        module is untyped: tests call it through this `Any`-typed client."""
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, **kwargs}
        # redis-py's cluster module has no annotations.
        seeds = [SeedNode(LOOPBACK, node.port) for node in self.nodes]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=seeds, password=self.password, **options)

    def masters(self) -> list[ClusterNode]:
        return [
            node for node in self.nodes if node.container.status != "exited" and _is_master(node)
        ]

    def wait_until_ok(
        self, timeout: float = READY_TIMEOUT, masters: int = 3, replicated: bool = True
    ) -> None:
        """Until every running node says `cluster_state:ok` and knows every slot, `masters`
        nodes are masters and, if `replicated`, each has a replica in sync."""
        deadline = time.monotonic() + timeout
        problem = "not asked yet"
        while time.monotonic() < deadline:
            problem = self._health_problem(masters, replicated)
            if not problem:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the cluster is not ok after {timeout} s: {problem}")

    def _health_problem(self, masters: int, replicated: bool) -> str:
        roles: dict[str, str] = {}
        for node in self.nodes:
            node.container.reload()
            if node.container.status != "running":
                continue
            client = node.client(socket_timeout=1, decode_responses=True)
            try:
                info: Any = client.cluster("INFO")
                replication: Any = client.info("replication")
                roles[node.name] = str(client.role()[0])
            except redis.RedisError as exc:
                return f"{node.name}: {exc!r}"
            finally:
                client.close()
            if info.get("cluster_state") != "ok" or int(info.get("cluster_slots_ok", 0)) != 16384:
                return f"{node.name}: {info.get('cluster_state')}, {info.get('cluster_slots_ok')}"
            if not replicated:
                continue
            if roles[node.name] == "master" and int(replication.get("connected_slaves", 0)) < 1:
                return f"{node.name}: a master without a connected replica"
            if roles[node.name] == "slave" and replication.get("master_link_status") != "up":
                return f"{node.name}: a replica whose link to its master is not up"
        running_masters = sum(role == "master" for role in roles.values())
        if running_masters != masters:
            return f"{running_masters} masters running, expected {masters}: {roles}"
        return ""

    def remove(self) -> None:
        for node in self.nodes:
            with contextlib.suppress(docker.errors.NotFound):
                node.container.remove(force=True)
        self._docker.close()


def _is_master(node: ClusterNode) -> bool:
    try:
        return node.role() == "master"
    except redis.RedisError:
        return False


def _port_pair_free(port: int) -> bool:
    """Whether `port` and its cluster bus port are both free on 127.0.0.1 now."""
    for candidate in (port, port + BUS_PORT_OFFSET):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((LOOPBACK, candidate))
            except OSError:
                return False
    return True


def free_node_ports(count: int) -> list[int]:
    """`count` ports below 55536 whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    for _ in range(1000):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((LOOPBACK, 0))
            port: int = sock.getsockname()[1]
        if port + BUS_PORT_OFFSET < 65536 and port not in ports and _port_pair_free(port):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RuntimeError(f"found only {len(ports)} free port pairs for the cluster")


def _node_command(port: int, password: str) -> list[str]:
    return [
        "redis-server",
        "--port", str(port),
        "--bind", LOOPBACK,
        "--cluster-enabled", "yes",
        "--cluster-config-file", "/tmp/nodes.conf",
        "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
        "--cluster-announce-ip", LOOPBACK,
        "--save", "",
        "--appendonly", "no",
        "--requirepass", password,
        "--masterauth", password,
    ]  # fmt: skip


@contextlib.contextmanager
def running_cluster(version: str = "7", masters: int = 3) -> Iterator[ClusterDeployment]:
    """A cluster of `masters` masters with one replica each, of server `version` ("7",
    "valkey8"), healthy on entry and removed on exit."""
    image = IMAGES[version]
    require_docker(image)
    client = docker.from_env(timeout=60)
    password = secrets.token_hex(16)
    prefix = f"sf-cluster-{secrets.token_hex(3)}"
    deployment = ClusterDeployment(version, [], password, client)
    try:
        for index, port in enumerate(free_node_ports(masters * 2)):
            container = client.containers.run(
                image,
                _node_command(port, password),
                name=f"{prefix}-{index}",
                network_mode="host",
                detach=True,
            )
            node = ClusterNode(f"{prefix}-{index}", port, password, container)
            deployment.nodes.append(node)
        for node in deployment.nodes:
            wait_for_ping(node.client, node.name, READY_TIMEOUT)
        addresses = [node.address for node in deployment.nodes]
        create_command = ["redis-cli", "-a", password, "--no-auth-warning", "--cluster"]
        create_command += ["create", *addresses, "--cluster-replicas", "1", "--cluster-yes"]
        create = deployment.nodes[0].container.exec_run(create_command)
        if create.exit_code != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {create.output.decode()}")
        deployment.wait_until_ok(masters=masters)
        yield deployment
    finally:
        deployment.remove()


def node_of(cluster: ClusterDeployment, key: str) -> ClusterNode:
    """The master that owns `key`'s slot now."""
    client: Any = cluster.client()
    try:
        port = int(client.get_node_from_key(key).port)
    finally:
        client.close()
    return next(node for node in cluster.nodes if node.port == port)


def break_replication(master: ClusterNode, replica: ClusterNode) -> None:
    """Cut `replica` off its master for good (a wrong masterauth, its link dropped): the
    master goes on acknowledging writes that no replica receives."""
    replica_client: Any = replica.client()
    master_client: Any = master.client()
    try:
        replica_client.config_set("masterauth", "not-the-password")
        master_client.execute_command("CLIENT", "KILL", "TYPE", "replica")
        deadline = time.monotonic() + 10
        while int(master_client.info("replication")["connected_slaves"]) > 0:
            assert time.monotonic() < deadline, "the replica stayed connected"
            time.sleep(0.05)
    finally:
        replica_client.close()
        master_client.close()


def replica_of(cluster: ClusterDeployment, master: ClusterNode) -> ClusterNode:
    for node in cluster.nodes:
        client: Any = node.client(decode_responses=True)
        try:
            info = client.info("replication")
        finally:
            client.close()
        if info.get("role") == "slave" and int(info.get("master_port", 0)) == master.port:
            return node
    raise AssertionError(f"no replica of {master.name}")


def restore_replication(cluster: ClusterDeployment, replica: ClusterNode) -> None:
    """Undo `break_replication`: the replica gets the password back, reconnects and syncs."""
    client: Any = replica.client()
    try:
        client.config_set("masterauth", cluster.password)
    finally:
        client.close()
    cluster.wait_until_ok()
