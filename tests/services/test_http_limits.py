"""What one slow, idle or greedy client can hold of a service, over raw sockets to both
services as real processes: the request line and headers are limited (431, connection closed),
a request that stops arriving is cut off (408 or a close), idle keep-alive connections are
closed, and connections beyond HTTP_MAX_CONNECTIONS get 503.

The services here run with a 1 s read and keep-alive timeout so that the tests wait little;
each test waits for the server to act within a generous bound and asserts only that it did.
"""

from __future__ import annotations

import contextlib
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._redis import LocalRedisContainer
from tests.services._stack import Stack, running_stack, start_service, stop_service

MAX_HEADER_BYTES = 16 * 1024  # the services' default HTTP_MAX_HEADER_BYTES
MAX_CONNECTIONS = 4
# Far beyond the 1 s timeouts: only a server that never acts fails this bound.
PATIENCE_S = 30.0
SERVICES = ["inventory", "checkout"]


@pytest.fixture(scope="module")
def limited(redis7_container: LocalRedisContainer) -> Iterator[Stack]:
    with running_stack(
        redis7_container.url(),
        HTTP_READ_TIMEOUT_SECONDS="1",
        HTTP_KEEP_ALIVE_TIMEOUT_SECONDS="1",
    ) as stack:
        yield stack


def address(stack: Stack, service: str) -> tuple[str, int]:
    url = getattr(stack, service).url
    host, _, port = url.removeprefix("http://").partition(":")
    return host, int(port)


def connect(stack: Stack, service: str) -> socket.socket:
    sock = socket.create_connection(address(stack, service), timeout=PATIENCE_S)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed);
    fails if it keeps the connection open past PATIENCE_S."""
    chunks: list[bytes] = []
    deadline = time.monotonic() + PATIENCE_S
    while True:
        sock.settimeout(max(0.1, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        except TimeoutError:
            pytest.fail(f"the server kept the connection open for {PATIENCE_S} s")
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (its Content-Length) from a connection the server keeps open."""
    raw = b""
    while b"\r\n\r\n" not in raw or len(raw) < _expected_length(raw):
        chunk = sock.recv(65536)
        assert chunk, f"the server closed the connection mid-response: {raw[:300]!r}"
        raw += chunk
    return raw


def _expected_length(raw: bytes) -> int:
    head, _, _ = raw.partition(b"\r\n\r\n")
    return len(head) + 4 + int(parse(head + b"\r\n\r\n")[1].get("content-length", 0))


def parse(raw: bytes) -> tuple[int, dict[str, str], Any]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, json.loads(body) if body else None


def request_head(path: str, size: int) -> bytes:
    """A GET of `path` whose request line and headers are exactly `size` bytes."""
    start = f"GET {path} HTTP/1.1\r\nHost: test\r\nX-Pad: ".encode()
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def assert_refused_and_closed(raw: bytes, status: int) -> str:
    code, headers, body = parse(raw)
    assert code == status, raw[:300]
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert set(body) == {"detail"}
    detail: str = body["detail"]
    return detail


@pytest.mark.parametrize("service", SERVICES)
def test_headers_up_to_the_limit_are_served_and_one_byte_more_is_431(
    limited: Stack, service: str
) -> None:
    with connect(limited, service) as sock:
        sock.sendall(request_head("/healthz", MAX_HEADER_BYTES))
        status, _, body = parse(read_response(sock))
        assert (status, body) == (200, {"status": "ok"})

    with connect(limited, service) as sock:
        sock.sendall(request_head("/healthz", MAX_HEADER_BYTES + 1))
        detail = assert_refused_and_closed(read_until_closed(sock), 431)
        assert detail == f"Request line and headers larger than {MAX_HEADER_BYTES} bytes"


def test_the_limit_is_per_request_not_per_connection(limited: Stack) -> None:
    """Requests on one keep-alive connection, together far over the limit, are all served."""
    with connect(limited, "inventory") as sock:
        for _ in range(3 * MAX_HEADER_BYTES // 4000):
            sock.sendall(request_head("/healthz", 4000))
            assert parse(read_response(sock))[0] == 200


@pytest.mark.parametrize("service", SERVICES)
def test_a_64_mb_header_is_refused_long_before_it_is_sent(limited: Stack, service: str) -> None:
    """Was answered 200 after the server had buffered all 64 MB."""
    total = 64 * 1024 * 1024
    chunk = b"p" * 65536
    sent = 0
    with connect(limited, service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: ")
        try:
            while sent < total:
                sock.sendall(chunk)
                sent += len(chunk)
            sock.sendall(b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server closed the connection: what this test wants
        answer = read_until_closed(sock)
    # The kernel buffers of both ends take a few MB before the server's close is noticed.
    assert sent < total // 4, f"the server read {sent} bytes of one header"
    if answer:  # unless the close turned into a reset that dropped it
        assert_refused_and_closed(answer, 431)


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for {pid}")


def test_unfinished_huge_headers_do_not_stay_in_memory(limited: Stack) -> None:
    """Was +43 MB per connection that sent a big header block and never finished it."""
    connections, per_connection = 16, 8 * 1024 * 1024
    pid = limited.inventory.process.pid
    before = rss_bytes(pid)
    held = []
    try:
        for _ in range(connections):
            sock = connect(limited, "inventory")
            held.append(sock)
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nX-Pad: ")
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                for _ in range(per_connection // 65536):
                    sock.sendall(b"p" * 65536)
        grown = rss_bytes(pid) - before  # every connection still open on this side
    finally:
        for sock in held:
            sock.close()
    assert grown < connections * per_connection // 4, f"the service grew by {grown} bytes"


@pytest.mark.parametrize("service", SERVICES)
def test_half_a_header_block_is_cut_off_with_408(limited: Stack, service: str) -> None:
    """Was kept open, with its bytes, for as long as the client waited."""
    with connect(limited, service) as sock:
        sock.sendall(b"GET /cart HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer ")
        detail = assert_refused_and_closed(read_until_closed(sock), 408)
        assert detail == "The request did not arrive within 1 s"


@pytest.mark.parametrize("service", SERVICES)
def test_a_header_block_sent_a_byte_at_a_time_is_cut_off(limited: Stack, service: str) -> None:
    """Slowloris: each byte arrives in time, the request never does."""
    with connect(limited, service) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        deadline = time.monotonic() + PATIENCE_S
        try:
            while time.monotonic() < deadline:
                sock.sendall(b"X")
                time.sleep(0.2)
        except (BrokenPipeError, ConnectionResetError):
            return
    pytest.fail(f"the server still read a header after {PATIENCE_S} s")


def test_a_connection_that_sends_nothing_is_closed(limited: Stack) -> None:
    with connect(limited, "inventory") as sock:
        assert read_until_closed(sock) == b""


def test_a_body_that_stops_arriving_is_cut_off(limited: Stack) -> None:
    with connect(limited, "inventory") as sock:
        sock.sendall(
            b"POST /cart/items HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"item": '
        )
        answer = read_until_closed(sock)
        # The service may answer before reading the body (401: no session), never 2xx.
        if answer:
            assert parse(answer)[0] == 401


def test_an_idle_keep_alive_connection_is_closed(limited: Stack) -> None:
    with connect(limited, "checkout") as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers, body = parse(read_until_closed(sock))
        assert (status, body) == (200, {"status": "ok"})
        assert headers.get("connection") != "close"  # closed for idling, not after answering


def test_connections_beyond_the_limit_get_503_and_are_closed(
    redis7_container: LocalRedisContainer,
) -> None:
    # Long timeouts: the held connections stay open however slowly this test runs.
    service = start_service(
        "inventory",
        redis7_container.url(),
        HTTP_READ_TIMEOUT_SECONDS="120",
        HTTP_KEEP_ALIVE_TIMEOUT_SECONDS="120",
        HTTP_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
    )
    host, _, port = service.url.removeprefix("http://").partition(":")
    try:
        held = [socket.create_connection((host, int(port))) for _ in range(MAX_CONNECTIONS)]
        try:
            for sock in held:  # each one served: the server holds it
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
                assert parse(read_response(sock))[0] == 200
            with socket.create_connection((host, int(port)), timeout=PATIENCE_S) as extra:
                code, headers, body = parse(read_until_closed(extra))
                assert (code, body) == (503, {"detail": "Too many connections"})
                assert headers["retry-after"] == "1"
        finally:
            for sock in held:
                sock.close()
        # The slots are given back: a new connection is served again.
        deadline = time.monotonic() + PATIENCE_S
        while time.monotonic() < deadline:
            with socket.create_connection((host, int(port)), timeout=PATIENCE_S) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
                if parse(read_until_closed(sock))[0] == 200:
                    return
            time.sleep(0.1)
        pytest.fail("connections were not given back")
    finally:
        stop_service(service)
