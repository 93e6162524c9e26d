"""Both services as real processes (`python -m inventory`, `python -m checkout`) on loopback
ports, configured through the environment as a deployment would configure them."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests._redis import free_port

TOKEN_SECRET = "services-test-secret-" + "s" * 43
ADMIN_TOKEN = "services-test-admin-" + "a" * 44
LOGS = Path(os.environ.get("STOREFRONT_TEST_LOGS", "/tmp/storefront-test-logs"))


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    log: Path


@dataclass(frozen=True)
class Stack:
    inventory: Service
    checkout: Service
    redis_url: str
    admin_token: str = ADMIN_TOKEN
    token_secret: str = TOKEN_SECRET


def service_env(redis_url: str, port: int, **extra: str | None) -> dict[str, str]:
    """The service's environment: the defaults below, overridden by `extra`, where None
    leaves a variable unset (`ADMIN_TOKEN=None`: a service without the admin API)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REDIS_")}
    env.update(
        HOST="127.0.0.1",
        PORT=str(port),
        REDIS_URL=redis_url,
        CART_TOKEN_SECRET=TOKEN_SECRET,
        ADMIN_TOKEN=ADMIN_TOKEN,
        LOG_LEVEL="warning",
    )
    for key, value in extra.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


def start_service(name: str, redis_url: str, **extra: str | None) -> Service:
    port = free_port()
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / f"{name}-{port}.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", name],
            env=service_env(redis_url, port, **extra),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    service = Service(name, f"http://127.0.0.1:{port}", process, log)
    wait_until_live(service)
    return service


def wait_until_live(service: Service, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service.process.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with {service.process.returncode}:\n"
                + service.log.read_text()
            )
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}/healthz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{service.name} did not answer /healthz within {timeout} s")


def stop_service(service: Service) -> None:
    service.process.terminate()
    try:
        service.process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        service.process.kill()
        service.process.wait()


@contextlib.contextmanager
def running_stack(redis_url: str, **extra: str | None) -> Iterator[Stack]:
    inventory = start_service("inventory", redis_url, **extra)
    try:
        checkout = start_service("checkout", redis_url, **extra)
        try:
            yield Stack(inventory, checkout, redis_url)
        finally:
            stop_service(checkout)
    finally:
        stop_service(inventory)
