"""What the Redis outage tests (tests/services/test_redis_down.py, tests/reliability/) check
of the services: a fast 503 with Retry-After instead of a hang or a 500, readiness while
Redis is away, and no traceback in the services' logs afterwards."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import httpx
import pytest

from tests.services._stack import Stack
from tests.services.conftest import Shop

CLIENT_TIMEOUT = 5.0  # well above the services' Redis timeouts (1 s); a hang hits it
RECOVERY_TIMEOUT = 15.0
UNAVAILABLE = {"detail": "The cart store is unavailable; try again shortly"}

Send = Callable[[], Awaitable[httpx.Response]]


async def timed(name: str, send: Send) -> tuple[httpx.Response, float]:
    """The response to `send()` and its latency; fails the test when the client times out."""
    started = time.perf_counter()
    try:
        response = await send()
    except httpx.TimeoutException:
        pytest.fail(f"{name} hung: no answer within the client's {CLIENT_TIMEOUT} s timeout")
    return response, time.perf_counter() - started


def assert_unavailable(name: str, response: httpx.Response) -> None:
    assert response.status_code == 503, (name, response.status_code, response.text)
    assert response.headers["retry-after"].isdigit(), name
    assert int(response.headers["retry-after"]) >= 1, name
    assert response.headers["content-type"] == "application/json", name
    assert response.json() == UNAVAILABLE, name


async def wait_until_ready(shop: Shop) -> float:
    """Poll both services' /readyz until 200; returns how long it took."""
    started = time.monotonic()
    for base in (shop.inventory, shop.checkout):
        while True:
            response = await shop.client.get(f"{base}/readyz")
            if response.status_code == 200:
                break
            assert response.status_code == 503, response.text
            if time.monotonic() - started > RECOVERY_TIMEOUT:
                pytest.fail(f"{base} not ready {RECOVERY_TIMEOUT} s after Redis came back")
            await asyncio.sleep(0.1)
    return time.monotonic() - started


def assert_no_tracebacks(stack: Stack) -> None:
    for service in (stack.inventory, stack.checkout):
        log = service.log.read_text()
        assert "Traceback" not in log, f"{service.name}'s log ({service.log}):\n{log}"
        assert service.process.poll() is None, f"{service.name} exited"
