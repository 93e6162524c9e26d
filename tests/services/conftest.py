"""Fixtures for the services: both processes on real HTTP in front of a real Redis 7."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from tests._redis import LocalRedisContainer, flush
from tests.services._stack import Stack, running_stack


@pytest.fixture(scope="session")
def stack(redis7_container: LocalRedisContainer) -> Iterator[Stack]:
    """Both services for the whole session, sharing the session's Redis 7."""
    with running_stack(redis7_container.url()) as stack:
        yield stack


class Shop:
    """An HTTP client for both services, as a shopper's browser or an API client would be."""

    def __init__(self, stack: Stack, client: httpx.AsyncClient) -> None:
        self.stack = stack
        self.client = client
        self.inventory = stack.inventory.url
        self.checkout = stack.checkout.url

    async def new_session(self) -> dict[str, str]:
        """The Authorization header of a new guest session."""
        response = await self.client.post(f"{self.inventory}/sessions")
        assert response.status_code == 201, response.text
        return {"Authorization": f"Bearer {response.json()['token']}"}

    async def put_item(
        self, item_id: str, *, stock: int = 100, price_cents: int = 1000, name: str | None = None
    ) -> None:
        response = await self.client.put(
            f"{self.inventory}/items/{item_id}",
            json={"name": name or item_id.title(), "price_cents": price_cents, "stock": stock},
            headers={"X-Admin-Token": self.stack.admin_token},
        )
        assert response.status_code == 200, response.text

    async def add(self, auth: dict[str, str], item_id: str, quantity: int = 1) -> httpx.Response:
        return await self.client.post(
            f"{self.inventory}/cart/items",
            json={"item": {"id": item_id}, "quantity": quantity},
            headers=auth,
        )

    async def cart(self, auth: dict[str, str], service: str | None = None) -> httpx.Response:
        return await self.client.get(f"{service or self.checkout}/cart", headers=auth)

    async def pay(
        self, auth: dict[str, str], token: str = "tok_visa", key: str | None = None
    ) -> httpx.Response:
        headers = {**auth, **({"Idempotency-Key": key} if key else {})}
        return await self.client.post(
            f"{self.checkout}/checkout", json={"payment": {"token": token}}, headers=headers
        )


@pytest.fixture
async def shop(stack: Stack) -> AsyncIterator[Shop]:
    """The running services over an emptied Redis."""
    flush(stack.redis_url)
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        yield Shop(stack, client)
