"""The chart's Redis container, as rendered, runs in the local Redis 7 image the way the
kubelet would run it: its command line, redis.conf, environment, user, read-only root and
no capabilities. The services' REDIS_URL, as rendered, then reaches it with the password."""

from __future__ import annotations

import re
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis

from tests._redis import REDIS7_IMAGE, require_docker
from tests.chart._helm import FULLNAME, Rendered, run

pytestmark = pytest.mark.docker

READY_TIMEOUT = 15.0


def expand(value: str, env: Mapping[str, str]) -> str:
    """Kubernetes' $(VAR) expansion in command, args and env values."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m[1], m[0]), value)


@pytest.fixture(scope="module")
def redis_container(
    rendered_sets: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The rendered Redis, running: {"name", "password", "port"}; removed after the module."""
    require_docker(REDIS7_IMAGE)
    tmp_path = tmp_path_factory.mktemp("redis-container")
    rendered = rendered_sets["defaults"]
    workload = rendered.workload("redis")
    (container,) = workload.containers()
    pod_context, context = workload.spec["securityContext"], container["securityContext"]
    config_dir = tmp_path / "etc-redis"
    config_dir.mkdir()
    config = rendered.get("ConfigMap", f"{FULLNAME}-redis")["data"]["redis.conf"]
    (config_dir / "redis.conf").write_text(config)
    config_dir.chmod(0o755)
    (config_dir / "redis.conf").chmod(0o644)
    (password,) = {
        value for value in rendered.secret_values() if len(value) == 32
    }  # the generated redis-password
    env = {"REDIS_PASSWORD": password, "REDISCLI_AUTH": password}
    argv = container["command"] + [expand(arg, env) for arg in container["args"]]
    name = f"storefront-chart-redis-{uuid.uuid4().hex[:8]}"
    uid, gid, fs_group = context["runAsUser"], context["runAsGroup"], pod_context["fsGroup"]
    run(
        "docker", "run", "--detach", "--name", name,
        "--user", f"{uid}:{gid}", "--group-add", str(fs_group),
        "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--tmpfs", "/tmp", "--tmpfs", f"/data:uid={uid},gid={fs_group},mode=0770",
        "--volume", f"{config_dir}:/etc/redis:ro",
        "--env", "REDIS_PASSWORD", "--env", "REDISCLI_AUTH",
        "--publish", "127.0.0.1::6379",
        REDIS7_IMAGE, *argv,
        env={"PATH": "/usr/local/bin:/usr/bin:/bin", **env},
    )  # fmt: skip
    try:
        port = run("docker", "port", name, "6379/tcp").stdout.strip().rsplit(":", 1)[1]
        readiness = container["readinessProbe"]["exec"]["command"]
        deadline = time.monotonic() + READY_TIMEOUT
        while run("docker", "exec", name, *readiness, check=False).returncode != 0:
            if time.monotonic() > deadline:
                logs = run("docker", "logs", name, check=False)
                pytest.fail(f"Redis not ready in {READY_TIMEOUT} s:\n{logs.stdout}{logs.stderr}")
            time.sleep(0.1)
        yield {"name": name, "password": password, "port": port}
    finally:
        subprocess.run(["docker", "rm", "--force", name], capture_output=True, check=False)


def test_rendered_redis_requires_the_password_and_keeps_what_the_services_need(
    rendered_sets: dict[str, Rendered], redis_container: dict[str, str]
) -> None:
    rendered = rendered_sets["defaults"]
    (service,) = rendered.workload("checkout").containers()
    url_template = {e["name"]: e for e in service["env"]}["REDIS_URL"]["value"]
    url = urlsplit(expand(url_template, {"REDIS_PASSWORD": redis_container["password"]}))
    local = url._replace(netloc=f":{url.password}@127.0.0.1:{redis_container['port']}")
    client = redis.Redis.from_url(urlunsplit(local))
    try:
        assert client.ping() is True
        # The services run every change as a Lua script by SHA.
        sha = client.script_load("return redis.call('SET', KEYS[1], ARGV[1])")
        assert client.evalsha(sha, 1, "k", "v") == b"OK"
        assert client.eval("return 1", 0) == 1
        for command in (("FLUSHALL",), ("FLUSHDB",), ("CONFIG", "GET", "*"), ("KEYS", "*"),
                        ("DEBUG", "SLEEP", "0")):  # fmt: skip
            with pytest.raises(redis.ResponseError, match="unknown command"):
                client.execute_command(*command)  # type: ignore[no-untyped-call]
        assert client.info("persistence")["aof_enabled"] == 1
        memory = client.info("memory")
        assert memory["maxmemory"] == 400 * 1024 * 1024
        assert memory["maxmemory_policy"] == "noeviction"
    finally:
        client.close()
    # Without the password: refused (a raw PING, so no client library retries or handshakes).
    with socket.create_connection(("127.0.0.1", int(redis_container["port"])), timeout=5) as raw:
        raw.sendall(b"PING\r\n")
        assert raw.recv(200).startswith(b"-NOAUTH")


def test_rendered_redis_probes_and_process_title(
    rendered_sets: dict[str, Rendered], redis_container: dict[str, str]
) -> None:
    (container,) = rendered_sets["defaults"].workload("redis").containers()
    name = redis_container["name"]
    liveness = container["livenessProbe"]["exec"]["command"]
    readiness = container["readinessProbe"]["exec"]["command"]
    assert run("docker", "exec", name, *liveness, check=False).returncode == 0
    wrong = ["docker", "exec", "--env", "REDISCLI_AUTH=wrong", name]
    # Readiness needs the password; liveness only needs Redis to answer.
    assert run(*wrong, *readiness, check=False).returncode != 0
    assert run(*wrong, *liveness, check=False).returncode == 0
    # --requirepass came from the environment; Redis' process title does not show it.
    processes = run("docker", "top", name, "-o", "pid,args").stdout
    assert "redis-server" in processes
    assert redis_container["password"] not in processes
