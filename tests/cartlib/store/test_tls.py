"""TLS with a private CA to a Redis Cluster and to a Sentinel setup, against real servers.

`REDIS_URL=rediss://...?ssl_ca_certs=<file>` is how TLS reaches cartlib in cluster and
Sentinel modes (the chart's externalRedis.tls renders it, the CA mounted from a Secret). A CA
made here with openssl signs the servers' certificate (127.0.0.1 and localhost); the servers
run from the local Redis 7 image with `--network host` on free loopback ports, TLS only
(`--port 0`): a one-node cluster owning every slot, and a master with one Sentinel (both TLS).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cartlib.settings import Settings
from cartlib.store.redis import create_redis
from tests._cluster import free_node_ports
from tests._redis import REDIS7_IMAGE, free_port, require_docker
from tests._unavailable import unavailable

pytestmark = pytest.mark.docker

PASSWORD = "tls-test-password"
SECRET = "t" * 40


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ca.crt, and server.crt/server.key for 127.0.0.1 and localhost signed by it."""
    openssl = shutil.which("openssl")
    if openssl is None:
        unavailable("openssl is missing (Debian's openssl package)")
    folder = tmp_path_factory.mktemp("tls")

    def ssl(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True)

    ssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    ssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    for path in folder.iterdir():
        path.chmod(0o644)  # the container's redis user reads them
    folder.chmod(0o755)
    return folder


def tls_args(port: int) -> list[str]:
    return [
        "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
        "--tls-cert-file", "/tls/server.crt", "--tls-key-file", "/tls/server.key",
        "--tls-ca-cert-file", "/tls/ca.crt", "--tls-auth-clients", "no",
    ]  # fmt: skip


@dataclass
class Servers:
    names: list[str]

    def start(self, certificates: Path, *args: str, volumes: tuple[str, ...] = ()) -> None:
        name = f"storefront-tls-{uuid.uuid4().hex[:8]}"
        self.names.append(name)
        subprocess.run(
            ["docker", "run", "--detach", "--name", name, "--network", "host",
             f"--volume={certificates}:/tls:ro", *[f"--volume={v}" for v in volumes],
             REDIS7_IMAGE, *args],
            check=True, capture_output=True,
        )  # fmt: skip

    def cli(self, port: int, *command: str) -> str:
        result = subprocess.run(
            ["docker", "exec", self.names[0], "redis-cli", "--tls", "--cacert", "/tls/ca.crt",
             "-p", str(port), "--no-auth-warning", "-a", PASSWORD, *command],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        return result.stdout.strip()


@pytest.fixture
def servers() -> Iterator[Servers]:
    require_docker(REDIS7_IMAGE)
    started = Servers([])
    try:
        yield started
    finally:
        if started.names:
            subprocess.run(["docker", "rm", "--force", *started.names], capture_output=True)


def wait_until(what: str, check: object, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():  # type: ignore[operator]
        if time.monotonic() > deadline:
            pytest.fail(f"not within {timeout} s: {what}")
        time.sleep(0.2)


def settings(**env: str) -> Settings:
    return Settings(_env_file=None, cart_token_secret=SECRET, **env)  # type: ignore[call-arg, arg-type]


async def test_cluster_over_tls_with_the_ca_of_the_url(
    certificates: Path, servers: Servers
) -> None:
    (port,) = free_node_ports(1)  # and its cluster bus port, +10000
    servers.start(
        certificates, "redis-server", *tls_args(port), "--tls-cluster", "yes",
        "--cluster-enabled", "yes", "--cluster-announce-ip", "127.0.0.1",
        "--requirepass", PASSWORD, "--masterauth", PASSWORD,
    )  # fmt: skip
    wait_until("the node answers", lambda: servers.cli(port, "PING") == "PONG")
    assert servers.cli(port, "CLUSTER", "ADDSLOTSRANGE", "0", "16383") == "OK"
    wait_until(
        "the cluster is ok", lambda: "cluster_state:ok" in servers.cli(port, "CLUSTER", "INFO")
    )
    ca = certificates / "ca.crt"
    redis = create_redis(
        settings(
            redis_cluster_nodes=f"127.0.0.1:{port}",
            redis_url=f"rediss://localhost:6379/0?ssl_ca_certs={ca}",
            redis_password=PASSWORD,
        )
    )
    try:
        assert await redis.set("sf:{s1}:cart:tls", "1") is True
        assert await redis.get("sf:{s1}:cart:tls") == b"1"
    finally:
        await redis.aclose()
    # Without the CA (the system's only), the server's certificate is refused.
    untrusted = create_redis(
        settings(
            redis_cluster_nodes=f"127.0.0.1:{port}",
            redis_url="rediss://localhost:6379/0",
            redis_password=PASSWORD,
        )
    )
    try:
        with pytest.raises(Exception, match="certificate verify failed"):
            await untrusted.get("sf:{s1}:cart:tls")
    finally:
        await untrusted.aclose()


async def test_sentinel_over_tls_with_the_ca_of_the_url(
    certificates: Path, servers: Servers, tmp_path: Path
) -> None:
    master, sentinel = free_port(), free_port()
    servers.start(certificates, "redis-server", *tls_args(master), "--requirepass", PASSWORD)
    wait_until("the master answers", lambda: servers.cli(master, "PING") == "PONG")
    # Sentinel rewrites its file: a folder the container's user can write.
    config = tmp_path / "sentinel"
    config.mkdir()
    config.chmod(0o777)
    args = tls_args(sentinel)
    lines = [
        f"{key.removeprefix('--')} {value}"
        for key, value in zip(args[::2], args[1::2], strict=True)
    ]
    lines += [
        "tls-replication yes",  # Sentinel reaches the master over TLS
        f"sentinel monitor shop 127.0.0.1 {master} 1",
        f"sentinel auth-pass shop {PASSWORD}",
    ]
    (config / "sentinel.conf").write_text("\n".join(lines) + "\n")
    (config / "sentinel.conf").chmod(0o666)
    servers.start(
        certificates, "redis-sentinel", "/conf/sentinel.conf", volumes=(f"{config}:/conf",)
    )
    wait_until(
        "the Sentinel names the master",
        lambda: (
            servers.cli(sentinel, "SENTINEL", "get-master-addr-by-name", "shop").split()
            == ["127.0.0.1", str(master)]
        ),
    )
    ca = certificates / "ca.crt"
    redis = create_redis(
        settings(
            redis_sentinels=f"127.0.0.1:{sentinel}",
            redis_sentinel_master="shop",
            redis_url=f"rediss://localhost:6379/0?ssl_ca_certs={ca}",
            redis_password=PASSWORD,
        )
    )
    try:
        assert await redis.set("sf:cart:{tls}", "1") is True
        assert await redis.get("sf:cart:{tls}") == b"1"
    finally:
        await redis.aclose()
