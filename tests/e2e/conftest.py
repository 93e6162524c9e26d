"""The built images as a deployment runs them: Redis and both services as containers on one
user-defined Docker network, configured through the environment the Helm chart gives them,
with the chart's restrictions (read-only root filesystem with a /tmp tmpfs, every
capability dropped, no privilege escalation, the image's non-root user).

The images come from `make images` (tools/build-images.sh) and `make redis-images`; without
Docker or the images these tests skip locally and fail in CI (CI=true), like every Docker test.

Fixtures:
    image_stack   module: a running ImageStack, removed with its network at the end
"""

from __future__ import annotations

import contextlib
import functools
import gc
import os
import secrets
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

import docker
import docker.errors
import httpx
import pytest

from tests._redis import REDIS7_IMAGE, docker_problem
from tests._unavailable import unavailable

INVENTORY_IMAGE: Final = os.environ.get("STOREFRONT_INVENTORY_IMAGE", "storefront-inventory:dev")
CHECKOUT_IMAGE: Final = os.environ.get("STOREFRONT_CHECKOUT_IMAGE", "storefront-checkout:dev")
IMAGES: Final = {"inventory": INVENTORY_IMAGE, "checkout": CHECKOUT_IMAGE}
LOADGENERATOR_IMAGE: Final = os.environ.get(
    "STOREFRONT_LOADGENERATOR_IMAGE", "storefront-loadgenerator:dev"
)
PORTS: Final = {"inventory": 8001, "checkout": 8002}
# The chart's container securityContext, in Docker's terms.
HARDENING: Final[dict[str, Any]] = {
    "read_only": True,
    "tmpfs": {"/tmp": ""},
    "cap_drop": ["ALL"],
    "security_opt": ["no-new-privileges"],
}
LOOPBACK: Final = "127.0.0.1"


@functools.cache
def images_problem() -> str | None:
    """Why the service images cannot run here, or None (asked once)."""
    problem = docker_problem(REDIS7_IMAGE)
    if problem is not None:
        return problem
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        client = docker.from_env(timeout=10)
        try:
            for image in IMAGES.values():
                try:
                    client.images.get(image)
                except docker.errors.ImageNotFound:
                    return f"no local image {image}: run `make images` (tools/build-images.sh)"
        finally:
            client.close()
            gc.collect()
    return None


def require_images() -> None:
    """Skip without Docker or the images, or fail in CI (CI=true), where nothing may skip."""
    problem = images_problem()
    if problem is None:
        return
    unavailable(problem)


def require_loadgenerator_image(stack: ImageStack) -> None:
    """Skip without the image (`make images` builds it), or fail in CI, like require_images."""
    try:
        stack.client.images.get(LOADGENERATOR_IMAGE)
    except docker.errors.ImageNotFound:
        unavailable(f"no local image {LOADGENERATOR_IMAGE}: run `make images`")


@dataclass(frozen=True)
class Secrets:
    """Fresh for each run, as the chart generates them; none may show up in logs or images."""

    token_secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    admin_token: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    redis_password: str = field(default_factory=lambda: secrets.token_hex(24))

    def values(self) -> tuple[str, str, str]:
        return (self.token_secret, self.admin_token, self.redis_password)


@dataclass(frozen=True)
class ServiceContainer:
    service: str
    container: Any  # docker.models.containers.Container
    url: str  # from this machine, through the port published on 127.0.0.1
    internal_url: str  # from the Docker network, by container name

    def logs(self) -> str:
        return str(self.container.logs().decode())


class ImageStack:
    """Redis and the two services on their own network; `start_service` adds more."""

    def __init__(self, client: Any, cleanup: contextlib.ExitStack) -> None:
        self.client = client
        self.cleanup = cleanup
        self.prefix = f"sf-e2e-{secrets.token_hex(4)}"
        self.secrets = Secrets()
        self.network = client.networks.create(self.prefix, driver="bridge")
        cleanup.callback(self.network.remove)
        self.redis_name = f"{self.prefix}-redis"
        self.redis = self.run(
            REDIS7_IMAGE,
            self.redis_name,
            # As the chart runs it: a password, and AOF persistence on /data.
            command=[
                "redis-server",
                "--requirepass",
                self.secrets.redis_password,
                "--protected-mode",
                "no",
                "--bind",
                "0.0.0.0",
                "--appendonly",
                "yes",
            ],
        )
        self.wait_for_redis()
        self.inventory = self.start_service("inventory")
        self.checkout = self.start_service("checkout")

    def run(self, image: str, name: str, **options: Any) -> Any:
        """Start a detached container on the network; it is removed at the end."""
        container = self.client.containers.run(
            image, name=name, network=self.network.name, detach=True, **options
        )
        self.cleanup.callback(container.remove, force=True, v=True)
        return container

    def redis_cli(self, *args: str) -> str:
        result = self.redis.exec_run(
            ["redis-cli", "--no-auth-warning", "-a", self.secrets.redis_password, *args]
        )
        return str(result.output.decode()).strip()

    def wait_for_redis(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while self.redis_cli("PING") != "PONG":
            if time.monotonic() > deadline:
                raise TimeoutError(f"Redis did not answer PING:\n{self.redis.logs().decode()}")
            time.sleep(0.1)

    def service_env(self, service: str) -> dict[str, str]:
        """The environment the chart gives a service container."""
        return {
            "REDIS_URL": f"redis://:{self.secrets.redis_password}@{self.redis_name}:6379/0",
            "CART_TOKEN_SECRET": self.secrets.token_secret,
            "ADMIN_TOKEN": self.secrets.admin_token,
            "HOST": "0.0.0.0",
            "PORT": str(PORTS[service]),
            "LOG_LEVEL": "info",
        }

    def start_service(self, service: str, suffix: str = "", **env: str) -> ServiceContainer:
        """Run the service's image hardened as the chart runs it, and wait until it is ready."""
        name = f"{self.prefix}-{service}{suffix}"
        port = PORTS[service]
        container = self.run(
            IMAGES[service],
            name,
            environment={**self.service_env(service), **env},
            ports={f"{port}/tcp": (LOOPBACK, None)},
            **HARDENING,
        )
        container.reload()
        host_port = container.ports[f"{port}/tcp"][0]["HostPort"]
        started = ServiceContainer(
            service, container, f"http://{LOOPBACK}:{host_port}", f"http://{name}:{port}"
        )
        wait_until_ready(started)
        return started


def wait_until_ready(service: ServiceContainer, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        service.container.reload()
        if service.container.status == "exited":
            raise RuntimeError(f"{service.service} exited:\n{service.logs()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{service.url}/readyz", timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise TimeoutError(f"{service.service} not ready within {timeout} s:\n{service.logs()}")


@pytest.fixture(scope="module")
def image_stack() -> Iterator[ImageStack]:
    require_images()
    with contextlib.ExitStack() as cleanup:
        client = docker.from_env(timeout=60)
        cleanup.callback(client.close)
        yield ImageStack(client, cleanup)
