"""Idle keep-alive connections: the client, not the service, closes them first.

A request a client sends on a connection the server is closing at that moment is lost
between the two: the client reads an abrupt close and cannot know whether it was served.
Clients keep idle connections for a while (httpx 5 s) and proxies longer, so the services
keep theirs longer than that by default (`HTTP_KEEP_ALIVE_TIMEOUT_SECONDS`)."""

from __future__ import annotations

import asyncio
import random

import httpx

from tests.services._stack import Stack

CONNECTIONS = 256


async def test_a_client_reusing_connections_at_its_idle_expiry_loses_no_request(
    stack: Stack,
) -> None:
    """Each client uses httpx's default limits, so its connection expires after the same
    idle time as uvicorn's default keep-alive; it is reused just before that."""
    url = f"{stack.inventory.url}/healthz"
    expiry = httpx.Limits().keepalive_expiry
    assert expiry is not None

    async def reuse_at_expiry() -> list[str]:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(url)).status_code == 200
            await asyncio.sleep(expiry - random.uniform(0.0, 0.2))
            try:
                second = await client.get(url)
            except httpx.TransportError as exc:
                return [repr(exc)]
            return [] if second.status_code == 200 else [second.text]

    failures = await asyncio.gather(*(reuse_at_expiry() for _ in range(CONNECTIONS)))
    assert [f for f in failures if f] == []
