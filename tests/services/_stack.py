"""Both services as real processes (`python -m inventory`, `python -m checkout`) on loopback
ports, configured through the environment as a deployment would configure them, started and
stopped by `devstack` as `make run` starts them."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devstack import services
from devstack.processes import Child, stop_children
from tests._redis import free_port

TOKEN_SECRET = "services-test-secret-" + "s" * 43
ADMIN_TOKEN = "services-test-admin-" + "a" * 44
LOGS = Path(os.environ.get("STOREFRONT_TEST_LOGS", "/tmp/storefront-test-logs"))


@dataclass(frozen=True)
class Service:
    name: str
    url: str
    child: Child
    log: Path

    @property
    def process(self) -> subprocess.Popen[bytes]:
        return self.child.proc


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
    base = {key: value for key, value in os.environ.items() if not key.startswith("REDIS_")}
    defaults: dict[str, str | None] = {
        "REDIS_URL": redis_url,
        "CART_TOKEN_SECRET": TOKEN_SECRET,
        "ADMIN_TOKEN": ADMIN_TOKEN,
        "LOG_LEVEL": "warning",
    }
    return services.service_env(port, base, **{**defaults, **extra})


def start_service(name: str, redis_url: str, **extra: str | None) -> Service:
    """Start a service and wait until it is live (`/healthz`: Redis may be down on purpose)."""
    port = free_port()
    log = LOGS / f"{name}-{port}.log"
    process = services.start_service(
        name, port, service_env(redis_url, port, **extra), log=log, ready_path="/healthz"
    )
    return Service(name, process.url, process.child, log)


def stop_service(service: Service) -> None:
    stop_children([service.child], services.STOP_TIMEOUT)


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
