"""The load generator image (Dockerfile target `loadgenerator`, the chart's
loadgenerator.enabled) run as the chart runs it, for a few seconds, against the two service
containers: it exits 0 with requests recorded and no failures (402 for the declined card and
409 when sold out are right answers, which the locustfile counts as successes)."""

from __future__ import annotations

import json
from typing import Any, Final

import httpx
import pytest

from tests.e2e.conftest import (
    HARDENING,
    LOADGENERATOR_IMAGE,
    ImageStack,
    require_loadgenerator_image,
)

pytestmark = pytest.mark.docker

ITEMS: Final = ("lg-mug", "lg-cap", "lg-tee")


def stock_the_shop(stack: ImageStack) -> None:
    for item_id in ITEMS:
        response = httpx.put(
            f"{stack.inventory.url}/items/{item_id}",
            json={"name": item_id, "price_cents": 500, "stock": 1000},
            headers={"X-Admin-Token": stack.secrets.admin_token},
            timeout=5,
        )
        assert response.status_code == 200, response.text


def run_loadgenerator(stack: ImageStack, name: str, **env: str) -> tuple[int, list[Any], str]:
    """Run the image for 5 s (at most 60 s in all): its status, locust's --json stats, its log."""
    container = stack.run(
        LOADGENERATOR_IMAGE,
        f"{stack.prefix}-{name}",
        command=["--run-time", "5s", "--stop-timeout", "2", "--only-summary", "--json"],
        environment={
            "LOCUST_HOST": stack.inventory.internal_url,
            "CHECKOUT_URL": stack.checkout.internal_url,
            "LOCUST_USERS": "5",
            "LOCUST_SPAWN_RATE": "5",
            **env,
        },
        user="10001:10001",
        **HARDENING,
    )
    status = int(container.wait(timeout=60)["StatusCode"])
    stats = json.loads(container.logs(stdout=True, stderr=False).decode())
    log = container.logs(stdout=False, stderr=True).decode()
    return status, stats, log


@pytest.mark.parametrize("checkout", ["true", "false"])
def test_the_loadgenerator_walks_the_shop_without_failures(
    image_stack: ImageStack, checkout: str
) -> None:
    require_loadgenerator_image(image_stack)
    stock_the_shop(image_stack)
    status, stats, log = run_loadgenerator(
        image_stack, f"loadgen-{checkout}", LOADGEN_CHECKOUT=checkout
    )
    assert status == 0, log
    requests = {entry["name"]: entry["num_requests"] for entry in stats}
    failures = {entry["name"]: entry["num_failures"] for entry in stats if entry["num_failures"]}
    assert failures == {}, log
    assert requests.get("/sessions", 0) >= 5  # one session per shopper at least
    assert sum(requests.values()) > 10, requests
    assert "/items" in requests
    if checkout == "false":  # shoppers abandon carts instead: no checkout, more sessions
        assert not any(name.startswith("/checkout") for name in requests), requests
