"""The floor: the most a Python service can do for an add-to-cart request on this machine.

A bare ASGI app (no framework) served by uvicorn with uvloop and httptools, like the
services. Per request it reads the bearer token from the `Authorization` header, reads the
body (without parsing it), does one pipelined `HINCRBY` + `EXPIRE` (one round trip) with
redis-py's asyncio client on a pool like the services' (hiredis parser), and answers a
small JSON. No token verification, validation, metrics, logging or routing: whatever
storefront does on top of this is what its ratio to the floor measures.

    python -m bench.floor --port 8009 --redis-url redis://127.0.0.1:6379/0

`GET /healthz` answers without touching Redis (for readiness checks).
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
from redis.asyncio import BlockingConnectionPool, Redis

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

KEY_PREFIX = b"floor:"
TTL_SECONDS = 3600
_JSON = [(b"content-type", b"application/json")]


class Floor:
    """The ASGI application; the Redis client is made at lifespan startup."""

    def __init__(self, redis_url: str, max_connections: int = 64) -> None:
        self._redis_url = redis_url
        self._max_connections = max_connections
        self._redis: Redis | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                token = value[7:]  # after "Bearer "
                break
        more_body = True
        while more_body:
            message = await receive()
            more_body = message.get("more_body", False)
        if scope["path"] == "/healthz":
            await _respond(send, b'{"status":"ok"}')
            return
        assert self._redis is not None
        pipe = self._redis.pipeline(transaction=False)
        key = KEY_PREFIX + token[-32:]  # the end of the JWT signature: one key per session
        pipe.hincrby(key, "units", 1)
        pipe.expire(key, TTL_SECONDS)
        units, _ = await pipe.execute()
        await _respond(send, b'{"units":%d}' % units)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                pool = BlockingConnectionPool.from_url(
                    self._redis_url, max_connections=self._max_connections, timeout=1.0
                )
                self._redis = Redis.from_pool(pool)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._redis is not None:
                    await self._redis.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _respond(send: Send, body: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [*_JSON, (b"content-length", b"%d" % len(body))],
        }
    )
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8009)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    run(Floor(args.redis_url), host=args.host, port=args.port)


def run(floor: Floor, *, port: int, host: str = "127.0.0.1") -> None:
    """Serve `floor` as the services are served: uvicorn, uvloop, httptools."""
    uvicorn.run(
        floor,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level="warning",
        access_log=False,
        server_header=False,
    )


if __name__ == "__main__":
    main()
