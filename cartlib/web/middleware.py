"""Pure ASGI middleware: each costs one function call per request, unlike a
`BaseHTTPMiddleware`, which costs a task and streams per request (bench/README.md)."""

from __future__ import annotations

import itertools
import logging
import os
import re
from time import perf_counter

from prometheus_client.metrics import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cartlib.web import metrics
from cartlib.web.errors import PayloadTooLarge, status_of
from cartlib.web.logs import request_id_var

access_log = logging.getLogger("storefront.access")

REQUEST_ID_HEADER = b"x-request-id"
# Matched whole (fullmatch): `$` would let a trailing newline into the logs.
_VALID_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class _RequestIds:
    """Made request ids: 32 hex digits, a random prefix per process and a counter (a uuid4
    per request cost a urandom call and a UUID object; ids need to be unique, not secret)."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = os.urandom(8).hex()
        self.counter = itertools.count()

    def new(self) -> str:
        return f"{self.prefix}{next(self.counter):016x}"


_request_ids = _RequestIds()


class ServiceMiddleware:
    """What every request passes through, in one pure ASGI layer (each layer is a call, a
    closure and an await per request; three of them cost more than the work they did):

    - a request id, taken from `X-Request-ID` or made, echoed on the response and set for logs;
    - the HTTP metrics, labelled by route template, and one access log line;
    - HEAD wherever GET works (RFC 9110, 9.3.2): routed and answered as a GET, headers
      (Content-Length included) as GET's, without the body. FastAPI routes answer only the
      methods they declare, and declaring HEAD on each would put a HEAD operation per route in
      the OpenAPI schema. Metrics and logs still say HEAD;
    - request bodies over `max_bytes` refused with 413, whether declared by Content-Length or
      streamed in chunks, before the application buffers them.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        # Resolving a labelled child takes a lock and a dict lookup: once per label set.
        self._children: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = perf_counter()
        request_id, too_large = _read_headers(scope, self.max_bytes)
        header = (REQUEST_ID_HEADER, request_id.encode())
        context = request_id_var.set(request_id)
        status = 500
        head = scope["method"] == "HEAD"
        inner = {**scope, "method": "GET"} if head else scope
        observed = False

        def observe() -> None:
            nonlocal observed
            observed = True
            if head and "route" in inner:  # the route matched, for the metrics' handler label
                scope["route"] = inner["route"]
            self._observe(scope, status, perf_counter() - started)

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            elif message["type"] == "http.response.body":
                if head and message.get("body"):
                    message = {**message, "body": b""}
                if not message.get("more_body", False):
                    # Before the last byte leaves: a client that has its answer finds it counted.
                    observe()
            await send(message)

        try:
            if too_large:
                refusal = self._too_large()
                response = JSONResponse({"detail": refusal.detail}, refusal.status_code)
                await response(inner, receive, send_with_request_id)
            elif too_large is False:
                # HTTP/1.1 framing: a body with a Content-Length is never longer than it says.
                await self.app(inner, receive, send_with_request_id)
            else:
                await self.app(inner, self._limited(receive), send_with_request_id)
        finally:
            if not observed:  # no complete answer was sent (an error, a disconnect)
                observe()
            request_id_var.reset(context)

    def _limited(self, receive: Receive) -> Receive:
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        return limited_receive

    def _too_large(self) -> HTTPException:
        # An HTTPException, because FastAPI turns any other error raised while reading a
        # body into a generic 400.
        return HTTPException(
            status_of(PayloadTooLarge), f"Request body larger than {self.max_bytes} bytes"
        )

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        route = scope.get("route")
        # The template (`/items/{item_id}`), never the raw path: raw paths are unbounded.
        handler = getattr(route, "path", "none")
        key = (method, handler, status)
        children = self._children.get(key)
        if children is None:
            children = self._children[key] = (
                metrics.HTTP_REQUESTS.labels(method, handler, str(status)),
                metrics.HTTP_REQUEST_DURATION.labels(method, handler),
            )
        counter, timer = children
        counter.inc()
        timer.observe(elapsed)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                "%s %s %d",
                method,
                scope["path"],
                status,
                extra={
                    "method": method,
                    "path": scope["path"],
                    "route": handler,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                },
            )


def _read_headers(scope: Scope, max_bytes: int = 0) -> tuple[str, bool | None]:
    """In one pass over the headers: the request id (the client's if valid, else a new one)
    and what the body's framing says: True if a Content-Length is over `max_bytes` or not a
    number, False if one bounds the body (and no Transfer-Encoding), None otherwise."""
    request_id: str | None = None
    too_large: bool | None = None
    chunked = False
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            if request_id is None and _VALID_REQUEST_ID.fullmatch(value):
                request_id = value.decode()
        elif name == b"content-length":
            too_large = bool(too_large) or not value.isdigit() or int(value) > max_bytes
        elif name == b"transfer-encoding":
            chunked = True
    if chunked and not too_large:
        too_large = None
    return request_id or _request_ids.new(), too_large


def _request_id(scope: Scope) -> str:
    return _read_headers(scope)[0]
