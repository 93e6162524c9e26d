"""One revision's side of `python -m bench.cpu`: the inventory app in this process, called
directly as an ASGI app (no HTTP server), timed with `time.process_time()`.

Run by bench/cpu.py as a script, by path and with `python -P`, with `PYTHONPATH` set to the
revision's tree: `inventory` and `cartlib` then come from that tree, while this file is always
the working tree's, so every revision is measured by the same code. For that reason this file
imports nothing from `bench` (which would be the revision's copy, or missing) and only
third-party packages that every measured revision uses.

The parent sets the storefront environment (REDIS_URL, CART_TOKEN_SECRET, a REDIS_KEY_PREFIX of
its own, ...) and passes a JSON configuration as the only argument. The protocol is JSON lines:
the worker answers `{"ready": ...}` once set up and warmed up, then reads one command per line,
`{"requests": n}`, runs n requests and answers `{"cpu_us": ..., "wall_us": ...}` (per request).
End of input ends it. Any failure is answered with `{"error": "..."}` and exit status 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Coroutine, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, TypedDict

import orjson

Message = MutableMapping[str, Any]
Asgi = Callable[
    [
        MutableMapping[str, Any],
        Callable[[], Awaitable[Message]],
        Callable[[Message], Awaitable[None]],
    ],
    Awaitable[None],
]
Header = tuple[bytes, bytes]

# What each scenario sends, and the only status it accepts.
SCENARIOS: dict[str, tuple[str, str, int]] = {
    "add": ("POST", "/cart/items", 201),
    "get": ("GET", "/cart", 200),
}


class WorkerConfig(TypedDict):
    scenario: str
    loop: str  # "uvloop" (what the services run) or "asyncio"
    expected_root: str  # the tree `inventory` and `cartlib` must be imported from
    item_ids: list[str]  # the lines of every cart
    sessions: int
    warmup_requests: int


class WorkerFailed(Exception):
    """Something the measurement cannot go on with; the message says what."""


@dataclass(frozen=True)
class Request:
    scope: dict[str, Any]
    body: bytes


async def call(app: Asgi, request: Request) -> tuple[int, bytes]:
    """One request through the app, as uvicorn would deliver it: the whole body at once."""
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": request.body, "more_body": False}
        # The client stays connected: what uvicorn does until the response is sent.
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    messages: list[Message] = []

    async def send(message: Message) -> None:
        messages.append(message)

    # A fresh scope per request: Starlette adds its own keys (app, route, path params) to it.
    await app(dict(request.scope), receive, send)
    status: int = messages[0]["status"]
    return status, b"".join(m.get("body", b"") for m in messages[1:])


def make_request(
    method: str, path: str, body: bytes = b"", headers: list[Header] | None = None
) -> Request:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "server": ("127.0.0.1", 8001),
        "client": ("127.0.0.1", 40000),
        "headers": [
            (b"host", b"127.0.0.1:8001"),
            *([(b"content-type", b"application/json")] if body else []),
            (b"content-length", str(len(body)).encode()),
            *(headers or []),
        ],
    }
    return Request(scope, body)


class Workload:
    """The requests of a scenario, in the harness's order: request g goes to session
    g mod S and item (g div S) mod L, so consecutive requests hit different carts and every
    cart holds the same L lines once the warm-up has added each of them."""

    def __init__(self, app: Asgi, config: WorkerConfig, tokens: list[str]) -> None:
        self.app = app
        self.method, self.path, self.expected_status = SCENARIOS[config["scenario"]]
        auth = [[(b"authorization", f"Bearer {token}".encode())] for token in tokens]
        self.adds = [
            make_request(
                "POST",
                "/cart/items",
                orjson.dumps({"item": {"id": item_id}, "quantity": 1}),
                auth[session],
            )
            for item_id in config["item_ids"]
            for session in range(len(tokens))
        ]
        self.gets = [make_request("GET", "/cart", headers=auth[s]) for s in range(len(tokens))]
        self.requests = self.adds if config["scenario"] == "add" else self.gets
        self.sent = 0  # carries on across rounds, so rounds do not repeat one slice of carts

    async def run(self, count: int) -> None:
        requests, app, expected = self.requests, self.app, self.expected_status
        for index in range(self.sent, self.sent + count):
            status, body = await call(app, requests[index % len(requests)])
            if status != expected:
                raise WorkerFailed(
                    f"{self.method} {self.path} answered {status}, not {expected}: {body[:300]!r}"
                )
        self.sent += count

    async def fill_carts(self) -> None:
        """Every cart gets its lines, so `get` reads, and `add` answers, full carts."""
        for request in self.adds:
            status, body = await call(self.app, request)
            if status != 201:
                raise WorkerFailed(f"POST /cart/items answered {status}: {body[:300]!r}")


def imported_from(expected_root: str) -> dict[str, str]:
    """Where `inventory` and `cartlib` came from; fails unless both are in `expected_root`
    (an editable install of the working tree must not shadow the revision's tree)."""
    import cartlib
    import inventory

    paths = {
        module.__name__: str(Path(module.__file__ or "").resolve())
        for module in (cartlib, inventory)
    }
    root = Path(expected_root).resolve()
    for name, path in paths.items():
        if not Path(path).is_relative_to(root):
            raise WorkerFailed(f"{name} was imported from {path}, not from {root}")
    return paths


async def session_tokens(app: Asgi, count: int) -> list[str]:
    tokens = []
    for _ in range(count):
        status, body = await call(app, make_request("POST", "/sessions"))
        if status != 201:
            raise WorkerFailed(f"POST /sessions answered {status}: {body[:300]!r}")
        tokens.append(orjson.loads(body)["token"])
    return tokens


async def serve(config: WorkerConfig, commands: IO[str], replies: IO[str]) -> None:
    paths = imported_from(config["expected_root"])
    from inventory.app import create_app

    app = create_app()
    # The lifespan the server would run: Redis client, catalog seeding, gc.freeze() (in the
    # revisions that have it).
    async with app.router.lifespan_context(app):
        tokens = await session_tokens(app, config["sessions"])
        workload = Workload(app, config, tokens)
        await workload.fill_carts()
        await workload.run(config["warmup_requests"])
        reply(replies, {"ready": True, "imported": paths, "pid": os.getpid()})
        for line in commands:
            count = int(json.loads(line)["requests"])
            cpu_started, wall_started = time.process_time(), time.perf_counter()
            await workload.run(count)
            cpu, wall = time.process_time() - cpu_started, time.perf_counter() - wall_started
            reply(replies, {"cpu_us": cpu / count * 1e6, "wall_us": wall / count * 1e6})


def reply(replies: IO[str], message: dict[str, Any]) -> None:
    replies.write(json.dumps(message) + "\n")
    replies.flush()


def run_loop(main: Coroutine[Any, Any, None], loop: str) -> None:
    if loop == "uvloop":
        import uvloop

        uvloop.run(main)
    else:
        asyncio.run(main)


def main() -> int:
    # The protocol gets stdout to itself: anything else the app prints (log lines) goes to
    # stderr, which the parent keeps in a log file.
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        config: WorkerConfig = json.loads(sys.argv[1])
        run_loop(serve(config, sys.stdin, replies), config["loop"])
    except Exception as exc:
        traceback.print_exc()
        with contextlib.suppress(OSError):
            reply(replies, {"error": f"{type(exc).__name__}: {exc}"})
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
