"""HEAD wherever GET works (RFC 9110, 9.3.2), on every GET route of both services: the GET
routes of each service's OpenAPI schema, the probes, /metrics and the docs. HEAD answers with
GET's status and headers and no body (read from a raw socket, so that a body sent anyway
would show), and changes nothing."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from tests.services.conftest import Shop
from tests.services.test_bad_input import redis_unchanged

UNDOCUMENTED_GETS = ["/healthz", "/readyz", "/metrics", "/openapi.json", "/docs"]
# Headers that differ between any two answers.
VARYING = {"date", "x-request-id"}


def raw_head(url: str, path: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
    """HEAD `path` over a fresh connection closed after the answer: (status, headers, what
    came after the header block, which must be nothing)."""
    host, _, port = url.removeprefix("http://").partition(":")
    lines = [f"HEAD {path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        raw = b""
        while chunk := sock.recv(65536):
            raw += chunk
    head, _, rest = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    parsed = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        parsed[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), parsed, rest


async def get_paths(shop: Shop, service: str, values: dict[str, str]) -> list[str]:
    """Every GET path of the service's OpenAPI schema, parameters filled from `values`."""
    schema: dict[str, Any] = (
        await shop.client.get(f"{getattr(shop, service)}/openapi.json")
    ).json()
    paths = [path for path, operations in schema["paths"].items() if "get" in operations]
    assert paths
    return [path.format(**values) for path in paths] + UNDOCUMENTED_GETS


@pytest.mark.parametrize("service", ["inventory", "checkout"])
async def test_head_answers_every_get_route_like_get_without_a_body(
    shop: Shop, service: str
) -> None:
    await shop.put_item("mug", stock=10)
    auth = await shop.new_session()
    assert (await shop.add(auth, "mug", 2)).status_code == 201
    paid = await shop.pay(auth)
    assert paid.status_code == 200, paid.text
    values = {"item_id": "mug", "order_id": paid.json()["order"]["id"]}
    paths = await get_paths(shop, service, values)
    url = getattr(shop, service)
    for path in paths:
        get = await shop.client.get(url + path, headers=auth)
        assert get.status_code == 200, (path, get.text)
        with redis_unchanged(shop):
            status, headers, body = raw_head(url, path, auth)
        assert (path, status, body) == (path, 200, b"")
        assert headers["content-type"] == get.headers["content-type"], path
        if path != "/metrics":  # the metrics change with every request
            expected = {k: v for k, v in get.headers.items() if k not in VARYING}
            got = {k: v for k, v in headers.items() if k not in VARYING | {"connection"}}
            assert got == expected, path


@pytest.mark.parametrize(
    ("service", "path", "status"),
    [
        ("inventory", "/items/no-such-item", 404),
        ("inventory", "/items/bad%20id", 422),
        ("inventory", "/cart", 401),
        ("checkout", "/orders/" + "0" * 32, 404),
        ("inventory", "/no-such-route", 404),
        ("checkout", "/checkout", 405),  # HEAD only where GET works
    ],
)
async def test_head_refuses_what_get_refuses_without_a_body(
    shop: Shop, service: str, path: str, status: int
) -> None:
    auth = {} if path == "/cart" else await shop.new_session()
    url = getattr(shop, service)
    get = await shop.client.get(url + path, headers=auth)
    assert get.status_code == status
    got_status, headers, body = raw_head(url, path, auth)
    assert (got_status, body) == (status, b"")
    assert headers.get("content-length") == get.headers.get("content-length")


async def test_head_is_counted_as_head_in_the_metrics(shop: Shop) -> None:
    """Under its route template, like any request."""
    await shop.put_item("mug")
    assert raw_head(shop.inventory, "/items/mug", {})[0] == 200
    metrics = (await shop.client.get(f"{shop.inventory}/metrics")).text
    assert 'http_requests_total{handler="/items/{item_id}",method="HEAD",status="200"}' in metrics
