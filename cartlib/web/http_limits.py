"""`LimitedHttpProtocol`: uvicorn's httptools protocol behind limits uvicorn does not have.

uvicorn's httptools protocol neither limits the size of a request's headers (a 64 MB header
was answered 200) nor times out a request that never finishes arriving (half a header block
was kept, with its bytes, for as long as the client kept the connection open). This wrapper
sits between the event loop and that protocol, using only the `asyncio.Protocol` interface
(what uvicorn's `http=` setting accepts) and an httptools parser of its own that holds no
request data, only where each request starts and ends. Per connection it enforces:

- `HTTP_MAX_HEADER_BYTES`: a request line and headers larger than this get 431 and the
  connection is closed, before more of them is buffered;
- `HTTP_READ_TIMEOUT_SECONDS`: a request (headers and body) must arrive whole within this long
  of its first byte, and a new connection must start one within it; otherwise the connection is
  closed (with 408 while the headers are incomplete, when no answer can be under way);
- `HTTP_MAX_CONNECTIONS`: connections beyond this many per process get 503 and are closed.

Idle keep-alive connections are closed by uvicorn after `HTTP_KEEP_ALIVE_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, cast

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from cartlib.settings import get_settings


def _answer(status: int, reason: str, detail: str, *extra: bytes) -> bytes:
    body = b'{"detail":"' + detail.encode() + b'"}'
    head = [
        f"HTTP/1.1 {status} {reason}".encode(),
        b"content-type: application/json",
        b"content-length: " + str(len(body)).encode(),
        b"connection: close",
        *extra,
    ]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class LimitedHttpProtocol(asyncio.Protocol):
    """Pass as uvicorn's `http=`; every event goes on to an `HttpToolsProtocol`."""

    # Open connections of this process (each worker process has its own).
    open_connections: ClassVar[int] = 0

    def __init__(self, **kwargs: Any) -> None:
        settings = get_settings()
        self._max_head = settings.http_max_header_bytes
        self._read_timeout = settings.http_read_timeout_seconds
        self._max_connections = settings.http_max_connections
        self._inner = HttpToolsProtocol(**kwargs)
        self._parser = httptools.HttpRequestParser(self)
        self._parser.set_dangerous_leniencies(lenient_data_after_close=True)
        self._transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._counted = False
        # Watching: False once the parser gave up (the inner protocol answers the error) or the
        # connection was upgraded; from then on events only pass through.
        self._watching = True
        # Where the current request is: its request line and headers (from its first byte), or
        # its body; neither between requests.
        self._reading_head = False
        self._reading_body = False
        self._head_bytes = 0

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports have asyncio.Transport's methods without being its subclass.
        transport = cast(asyncio.Transport, transport)
        self._transport = transport
        if LimitedHttpProtocol.open_connections >= self._max_connections:
            self._watching = False
            transport.write(
                _answer(503, "Service Unavailable", "Too many connections", b"retry-after: 1")
            )
            transport.close()
            return
        LimitedHttpProtocol.open_connections += 1
        self._counted = True
        self._loop = asyncio.get_running_loop()
        self._arm()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._counted:
            return
        if self._watching and not self._watch(data):
            return
        self._inner.data_received(data)

    def eof_received(self) -> None:
        if self._counted:
            self._inner.eof_received()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._counted:
            self._counted = False
            LimitedHttpProtocol.open_connections -= 1
            self._inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()

    # httptools callbacks (of this wrapper's own parser, which keeps no request data)

    def on_message_begin(self) -> None:
        self._reading_head = True
        self._head_bytes = 0
        if self._timer is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._reading_body = True

    def on_message_complete(self) -> None:
        self._reading_body = False
        self._head_bytes = 0
        self._disarm()

    # The limits

    def _watch(self, data: bytes) -> bool:
        """Follow `data` through this request's framing; False if the connection was closed."""
        try:
            if not self._reading_body and len(data) > self._max_head - self._head_bytes:
                # Parse only what the limit allows: a head that ends within it passes.
                allowed = self._max_head - self._head_bytes
                self._parser.feed_data(memoryview(data)[:allowed])
                if self._reading_head:
                    self._refuse(431, "Request Header Fields Too Large", self._too_large())
                    return False
                self._parser.feed_data(memoryview(data)[allowed:])
                fed = len(data) - allowed
            else:
                self._parser.feed_data(data)
                fed = len(data)
            if self._reading_head:
                # At most this many bytes of the head so far (fewer if the chunk began with
                # the end of the previous request).
                self._head_bytes += fed
        except httptools.HttpParserUpgrade:
            self._stop_watching()
        except httptools.HttpParserError:
            # Malformed: the inner protocol, reading the same bytes, answers 400.
            self._stop_watching()
        return True

    def _too_large(self) -> str:
        return f"Request line and headers larger than {self._max_head} bytes"

    def _stop_watching(self) -> None:
        self._watching = False
        self._disarm()

    def _arm(self) -> None:
        assert self._loop is not None
        self._timer = self._loop.call_later(self._read_timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        if self._reading_head:
            detail = f"The request did not arrive within {self._read_timeout:g} s"
            self._refuse(408, "Request Timeout", detail)
        elif self._transport is not None:
            # An idle new connection, or a body still arriving (the application may have
            # answered already): closed without a word.
            self._transport.close()

    def _refuse(self, status: int, reason: str, detail: str) -> None:
        self._stop_watching()
        assert self._transport is not None
        if not self._transport.is_closing():
            self._transport.write(_answer(status, reason, detail))
            self._transport.close()
