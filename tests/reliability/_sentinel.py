"""A Redis Sentinel deployment in Docker for the failover tests: a master, two replicas and
three sentinels, with passwords on Redis and on Sentinel.

Every container runs with `--network host`, each server on its own free 127.0.0.1 port.
What a sentinel announces (the master's address, and after a failover the promoted
replica's) is then an address that the sentinels, the replicas and the services on this
machine all reach alike. On a bridge network the sentinels would announce container names
or bridge addresses that a process on the host cannot resolve, and published ports differ
from the ports the containers see each other on, so a client on the host would be sent to
the wrong place after a failover.

Two replicas, not one: WAIT needs a replica, and after a failover the new master has one
only if a second replica was there to follow it (the chart runs three Redis pods alike).
"""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import shutil
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import docker
import redis
from docker.models.containers import Container

from tests._redis import IMAGES, LOOPBACK, free_port, require_docker, wait_for_ping

MASTER_NAME: Final = "storefront"
QUORUM: Final = 2
DOWN_AFTER_MS: Final = 1000
FAILOVER_TIMEOUT_MS: Final = 5000
READY_TIMEOUT: Final = 30.0
SENTINEL_CONFIG_PATH: Final = "/tmp/sentinel.conf"
# The chart's planned hand-over (its Redis preStop runs this very file).
HANDOVER_SCRIPT: Final = (
    Path(__file__).parents[2] / "charts" / "storefront" / "files" / "redis" / "handover.sh"
)
# The local Redis image has no shell: the script runs with this machine's dash and sleep,
# as the chart's container test runs the start scripts.
HOST_TOOLS: Final = {"/bin/sh": "dash", "/usr/bin/sleep": "sleep"}


@dataclass
class Node:
    """One redis-server or redis-sentinel container on 127.0.0.1:port."""

    name: str
    port: int
    password: str
    container: Container

    def client(self, **kwargs: Any) -> redis.Redis:
        """A new synchronous client (the caller closes it)."""
        options: dict[str, Any] = {"socket_timeout": 5, "socket_connect_timeout": 2, **kwargs}
        return redis.Redis(host=LOOPBACK, port=self.port, password=self.password, **options)

    def stop(self) -> None:
        """`docker stop`: SIGTERM, a clean shutdown."""
        self.container.stop(timeout=10)

    def kill(self) -> None:
        """`docker kill`: SIGKILL, a crash (no shutdown, no last sync to the replicas)."""
        self.container.kill()
        self.container.wait(timeout=30)

    def start(self) -> None:
        self.container.start()

    def status(self) -> str:
        self.container.reload()
        status: str = self.container.status
        return status

    def pause(self) -> None:
        self.container.pause()

    def unpause(self) -> None:
        self.container.unpause()


@dataclass
class SentinelDeployment:
    master: Node
    replicas: list[Node]
    sentinels: list[Node]
    password: str
    sentinel_password: str
    _docker: docker.DockerClient = field(repr=False)

    @property
    def servers(self) -> list[Node]:
        return [self.master, *self.replicas]

    def service_env(self) -> dict[str, str | None]:
        """The services' environment for this deployment, as the chart would set it."""
        return {
            "REDIS_SENTINELS": ",".join(f"{LOOPBACK}:{node.port}" for node in self.sentinels),
            "REDIS_SENTINEL_MASTER": MASTER_NAME,
            "REDIS_PASSWORD": self.password,
            "REDIS_SENTINEL_PASSWORD": self.sentinel_password,
        }

    def master_address(self) -> tuple[str, int] | None:
        """The master the first answering sentinel names, or None if none answers."""
        for sentinel in self.sentinels:
            client = sentinel.client(
                socket_timeout=1, socket_connect_timeout=1, decode_responses=True
            )
            try:
                address: Any = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                host, port = address
                return str(host), int(port)
            except (redis.RedisError, TypeError):
                continue
            finally:
                client.close()
        return None

    def current_master(self) -> Node:
        """The server the sentinels name as master now."""
        address = self.master_address()
        assert address is not None, "no sentinel answers"
        return next(node for node in self.servers if node.port == address[1])

    def wait_until_healthy(self, timeout: float = READY_TIMEOUT) -> None:
        """Until every sentinel knows the master, both replicas (up and in sync) and the other
        sentinels: only then can they agree on a failover."""
        deadline = time.monotonic() + timeout
        problem = "not asked yet"
        while time.monotonic() < deadline:
            problem = self._health_problem()
            if not problem:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the Sentinel deployment is not healthy after {timeout} s: {problem}")

    def _health_problem(self) -> str:
        for sentinel in self.sentinels:
            client = sentinel.client(socket_timeout=1)
            try:
                state: Any = client.sentinel_master(MASTER_NAME)
                replicas: Any = client.sentinel_slaves(MASTER_NAME)
            except redis.RedisError as exc:
                return f"{sentinel.name}: {exc!r}"
            finally:
                client.close()
            in_sync = [
                replica
                for replica in replicas
                if not replica["is_sdown"] and replica.get("master-link-status") == "ok"
            ]
            if state["is_sdown"] or len(in_sync) < len(self.replicas):
                return f"{sentinel.name} sees {len(in_sync)} replicas in sync"
            if state["num-other-sentinels"] < len(self.sentinels) - 1:
                return f"{sentinel.name} knows {state['num-other-sentinels']} other sentinels"
        return ""

    def hand_over(self, timeout_seconds: int = 20, **settings: str) -> tuple[int, str]:
        """Run the chart's hand-over script (HANDOVER_SCRIPT) against the current master, in
        a container of the Redis image on the host network, as the preStop runs it in the
        master's pod; (its exit status, its log). Every sentinel is asked (none is "this
        pod's" here). `settings`: more of its environment (HANDOVER_CALL_TIMEOUT_SECONDS
        ...)."""
        master = self.current_master()
        tools = {target: shutil.which(tool) for target, tool in HOST_TOOLS.items()}
        missing = [HOST_TOOLS[target] for target, path in tools.items() if not path]
        assert not missing, f"this machine lacks {missing} (Debian's dash and coreutils)"
        volumes = {str(path): {"bind": target, "mode": "ro"} for target, path in tools.items()}
        volumes[str(HANDOVER_SCRIPT)] = {"bind": "/handover.sh", "mode": "ro"}
        container = self._docker.containers.run(
            IMAGES["7"],
            ["/bin/sh", "/handover.sh"],
            name=f"{master.container.name}-handover-{secrets.token_hex(2)}",
            network_mode="host",
            volumes=volumes,
            environment={
                "REDISCLI_AUTH": self.password,
                "REDIS_SENTINEL_PASSWORD": self.sentinel_password,
                "HANDOVER_SENTINELS": " ".join(f"{LOOPBACK}:{s.port}" for s in self.sentinels),
                "MASTER_SET": MASTER_NAME,
                "HANDOVER_REDIS_HOST": LOOPBACK,
                "HANDOVER_REDIS_PORT": str(master.port),
                "HANDOVER_TIMEOUT_SECONDS": str(timeout_seconds),
                **settings,
            },
            detach=True,
        )
        try:
            status = container.wait(timeout=timeout_seconds * 2 + 10)["StatusCode"]
            log = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
        return int(status), log

    def remove(self) -> None:
        for node in [*self.sentinels, *self.servers]:
            with contextlib.suppress(docker.errors.NotFound):
                node.container.remove(force=True)
        self._docker.close()


def _server_command(port: int, password: str, replica_of: int | None) -> list[str]:
    command = [
        "redis-server",
        "--port", str(port),
        "--bind", LOOPBACK,
        "--save", "",
        "--appendonly", "no",
        "--requirepass", password,
        # A demoted master becomes a replica and must authenticate to the new master.
        "--masterauth", password,
        "--replica-announce-ip", LOOPBACK,
    ]  # fmt: skip
    if replica_of is not None:
        command += ["--replicaof", LOOPBACK, str(replica_of)]
    return command


def sentinel_config(port: int, master_port: int, password: str, sentinel_password: str) -> str:
    """A minimal sentinel.conf: its own, because Debian's monitors `mymaster` and daemonizes."""
    return "\n".join(
        [
            f"port {port}",
            f"bind {LOOPBACK}",
            "dir /tmp",
            # Clients and the other sentinels authenticate with it.
            f"requirepass {sentinel_password}",
            "sentinel resolve-hostnames yes",
            "sentinel announce-hostnames yes",
            f"sentinel announce-ip {LOOPBACK}",
            f"sentinel announce-port {port}",
            f"sentinel monitor {MASTER_NAME} {LOOPBACK} {master_port} {QUORUM}",
            f"sentinel auth-pass {MASTER_NAME} {password}",
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {MASTER_NAME} 2",
            "",
        ]
    )


def _as_tar(path: str, text: str) -> bytes:
    data = text.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo(os.path.basename(path))
        info.size = len(data)
        info.mode = 0o600
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _wait_for_ping(node: Node, timeout: float = READY_TIMEOUT) -> None:
    def give_up_if_exited() -> None:
        node.container.reload()
        if node.container.status == "exited":  # e.g. its port was taken meanwhile
            logs = node.container.logs(tail=20).decode(errors="replace")
            raise RuntimeError(f"{node.name} exited:\n{logs}")

    wait_for_ping(node.client, node.name, timeout, give_up_if_exited)


@contextlib.contextmanager
def running_sentinel_deployment(
    replicas: int = 2, sentinels: int = 3
) -> Iterator[SentinelDeployment]:
    """Start the deployment (Redis 7), wait until the sentinels agree on it, remove it on exit."""
    image = IMAGES["7"]
    require_docker(image)
    client = docker.from_env()
    prefix = f"storefront-failover-{secrets.token_hex(3)}"
    password = secrets.token_urlsafe(16)
    sentinel_password = secrets.token_urlsafe(16)
    nodes: list[Node] = []

    def run(name: str, port: int, secret: str, command: list[str], **options: Any) -> Node:
        container = client.containers.create(
            image, command, name=f"{prefix}-{name}", network_mode="host", **options
        )
        node = Node(name, port, secret, container)
        nodes.append(node)
        return node

    deployment: SentinelDeployment | None = None
    try:
        master_port = free_port()
        master = run("master", master_port, password, _server_command(master_port, password, None))
        master.start()
        _wait_for_ping(master)
        replica_nodes = []
        for number in range(replicas):
            port = free_port()
            node = run(
                f"replica{number}", port, password, _server_command(port, password, master_port)
            )
            node.start()
            replica_nodes.append(node)
        sentinel_nodes = []
        for number in range(sentinels):
            port = free_port()
            # Root in the container: Sentinel rewrites its config file, which put_archive
            # creates as root.
            node = run(
                f"sentinel{number}",
                port,
                sentinel_password,
                ["redis-sentinel", SENTINEL_CONFIG_PATH],
                user="0",
            )
            config = sentinel_config(port, master_port, password, sentinel_password)
            node.container.put_archive(
                os.path.dirname(SENTINEL_CONFIG_PATH), _as_tar(SENTINEL_CONFIG_PATH, config)
            )
            node.start()
            sentinel_nodes.append(node)
        for node in [*replica_nodes, *sentinel_nodes]:
            _wait_for_ping(node)
        deployment = SentinelDeployment(
            master, replica_nodes, sentinel_nodes, password, sentinel_password, client
        )
        deployment.wait_until_healthy()
        yield deployment
    finally:
        if deployment is not None:
            deployment.remove()
        else:
            for node in nodes:
                with contextlib.suppress(docker.errors.NotFound):
                    node.container.remove(force=True)
            client.close()
