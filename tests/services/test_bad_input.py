"""Bad input and bad credentials over real HTTP: a 4xx with a clear JSON `detail`, never a
5xx, and Redis exactly as it was before the request."""

from __future__ import annotations

import base64
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis

from tests.services._stack import start_service, stop_service
from tests.services.conftest import Shop

# Listing the catalog fills (and locks) a cache entry; that is not a change of state.
CACHE_PREFIXES = (b"sf:cache:", b"sf:cache-lock:")
NEW_ITEM_BODY = {"name": "Evil mug", "price_cents": 1, "stock": 1_000_000}
OVERSIZED_PAD = "x" * (20 * 1024)  # the services refuse bodies over 16 KiB
CART_DETAIL_EMPTY = {"detail": "There are no items in your cart!"}


def redis_snapshot(url: str) -> dict[bytes, tuple[Any, Any]]:
    """Every key (but cache entries) with its type and whole value; TTLs left out."""
    client = redis.Redis.from_url(url, socket_timeout=10)
    try:
        snapshot: dict[bytes, tuple[Any, Any]] = {}
        for key in client.scan_iter(count=1000):
            if key.startswith(CACHE_PREFIXES):
                continue
            kind = client.type(key)
            value: Any
            if kind == b"string":
                value = client.get(key)
            elif kind == b"hash":
                value = client.hgetall(key)
            elif kind == b"list":
                value = client.lrange(key, 0, -1)
            elif kind == b"set":
                value = sorted(client.smembers(key))
            elif kind == b"zset":
                value = client.zrange(key, 0, -1, withscores=True)
            elif kind == b"stream":
                value = client.xrange(key)
            else:
                raise AssertionError(f"unexpected type {kind!r} of {key!r}")
            snapshot[key] = (kind, value)
        return snapshot
    finally:
        client.close()


@contextlib.contextmanager
def redis_unchanged(shop: Shop) -> Iterator[None]:
    """Assert that what runs in the block leaves every key and value as it was."""
    before = redis_snapshot(shop.stack.redis_url)
    assert before, "the test should start from a Redis with something in it"
    yield
    assert redis_snapshot(shop.stack.redis_url) == before


def assert_refused(response: httpx.Response, status: int) -> Any:
    """`status`, as JSON `{"detail": ...}` with a message in it; returns the detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"detail"}, body
    detail = body["detail"]
    if isinstance(detail, list):  # FastAPI's validation errors
        assert detail, body
        assert all(error["msg"] and "loc" in error for error in detail), body
    else:
        assert isinstance(detail, str), body
        assert detail.strip(), body
    return detail


@pytest.fixture
async def shopper(shop: Shop) -> AsyncIterator[dict[str, str]]:
    """The Authorization header of a session with 2 mugs in its cart (10 in stock)."""
    await shop.put_item("mug", stock=10, price_cents=1299)
    await shop.put_item("cap", stock=1, price_cents=500)
    await shop.put_item("bulk", stock=1000, price_cents=1)
    auth = await shop.new_session()
    assert (await shop.add(auth, "mug", 2)).status_code == 201
    yield auth


def post_json(shop: Shop, url: str, body: bytes, **headers: str) -> Any:
    return shop.client.post(
        url, content=body, headers={"Content-Type": "application/json", **headers}
    )


# --- Bodies of POST /cart/items ------------------------------------------------------------

MALFORMED_JSON = {
    "truncated": (b'{"item": {"id": "mug"}, "quantity": ', 422),
    "trailing comma": (b'{"item": {"id": "mug"},}', 422),
    "not json": (b"item=mug&quantity=1", 422),
    "single quotes": (b"{'item': {'id': 'mug'}}", 422),
    "empty body": (b"", 422),
    "not utf-8": (b'{"item": {"id": "\xff\xfe"}}', 400),
    # json.loads accepts NaN and Infinity; FastAPI echoes them back in the error.
    "NaN quantity": (b'{"item": {"id": "mug"}, "quantity": NaN}', 422),
    "-Infinity quantity": (b'{"item": {"id": "mug"}, "quantity": -Infinity}', 422),
    "1e400 quantity": (b'{"item": {"id": "mug"}, "quantity": 1e400}', 422),
    "NaN item id": (b'{"item": {"id": NaN}, "quantity": 1}', 422),
    "a 5000-digit quantity": (b'{"item": {"id": "mug"}, "quantity": ' + b"9" * 5000 + b"}", 400),
    # The 422 echoes these, and orjson cannot write them: they were 500s.
    "an integer over 64 bits in an unknown field": (
        b'{"item": {"id": "mug"}, "quantity": 1, "extra": 18446744073709551616}',
        422,
    ),
    "an integer over 64 bits as the item id": (b'{"item": {"id": 18446744073709551616}}', 422),
    "a lone surrogate in the item id": (b'{"item": {"id": "\\ud800"}}', 422),
    "a lone surrogate as a field name": (b'{"item": {"id": "mug"}, "\\udfff": 1}', 422),
    "NaN beside an integer over 64 bits": (
        b'{"item": {"id": NaN}, "quantity": 1, "x": 18446744073709551616}',
        422,
    ),
    # json.loads keeps the last; something in front may have read the first.
    "a duplicate key": (b'{"item": {"id": "cap"}, "item": {"id": "mug"}, "quantity": 1}', 422),
    "a duplicate key in the item": (b'{"item": {"id": "cap", "id": "mug"}}', 422),
    "JSON nested 5000 deep": (b'{"item": ' + b"[" * 5000 + b"]" * 5000 + b"}", 400),
    "JSON nested 500 deep": (b'{"item": ' + b"[" * 500 + b"]" * 500 + b"}", 422),
}


@pytest.mark.parametrize(("body", "status"), MALFORMED_JSON.values(), ids=MALFORMED_JSON.keys())
async def test_malformed_json_is_refused(
    shop: Shop, shopper: dict[str, str], body: bytes, status: int
) -> None:
    with redis_unchanged(shop):
        response = await post_json(shop, f"{shop.inventory}/cart/items", body, **shopper)
        assert_refused(response, status)


INVALID_ADDS: dict[str, Any] = {
    "quantity as a string": {"item": {"id": "mug"}, "quantity": "2"},
    "fractional quantity": {"item": {"id": "mug"}, "quantity": 2.5},
    "quantity as a float": {"item": {"id": "mug"}, "quantity": 2.0},
    "boolean quantity": {"item": {"id": "mug"}, "quantity": True},
    "null quantity": {"item": {"id": "mug"}, "quantity": None},
    "item as a string": {"item": "mug", "quantity": 1},
    "item id as a number": {"item": {"id": 7}, "quantity": 1},
    "unknown field": {"item": {"id": "mug"}, "quantity": 1, "price_cents": 1},
    "unknown field in item": {"item": {"id": "mug", "price_cents": 1}, "quantity": 1},
    "missing item": {"quantity": 1},
    "missing item id": {"item": {}, "quantity": 1},
    "a list": [{"item": {"id": "mug"}, "quantity": 1}],
    "a string": "mug",
    "huge quantity": {"item": {"id": "mug"}, "quantity": 10**30},
    "quantity 2**63": {"item": {"id": "mug"}, "quantity": 2**63},
    "quantity over the cap": {"item": {"id": "bulk"}, "quantity": 100},
    "negative quantity": {"item": {"id": "mug"}, "quantity": -1},
    "zero quantity": {"item": {"id": "mug"}, "quantity": 0},
    "empty item id": {"item": {"id": ""}, "quantity": 1},
    "item id too long": {"item": {"id": "m" * 65}, "quantity": 1},
    "item id with a brace": {"item": {"id": "mug{x}"}, "quantity": 1},
    "item id with a star": {"item": {"id": "mug*"}, "quantity": 1},
    "item id with a space": {"item": {"id": "mug 2"}, "quantity": 1},
    "item id with a slash": {"item": {"id": "mug/2"}, "quantity": 1},
    "item id with a colon": {"item": {"id": "sf:stock"}, "quantity": 1},
    "item id with a newline": {"item": {"id": "mug\n"}, "quantity": 1},
    "item id starting with a dash": {"item": {"id": "-mug"}, "quantity": 1},
    "item id of 15,000 characters": {"item": {"id": "m" * 15_000}, "quantity": 1},
    "item id with a NUL": {"item": {"id": "mug\x00"}, "quantity": 1},
    "item id with a tab": {"item": {"id": "mug\t2"}, "quantity": 1},
    "item id with a non-ASCII letter": {"item": {"id": "m\u00fcg"}, "quantity": 1},
    "item id of full-width digits": {"item": {"id": "\uff11\uff12"}, "quantity": 1},
    "item id with a zero-width space": {"item": {"id": "mug\u200b"}, "quantity": 1},
    "item id with a right-to-left override": {"item": {"id": "mug\u202e"}, "quantity": 1},
}


@pytest.mark.parametrize("body", INVALID_ADDS.values(), ids=INVALID_ADDS.keys())
async def test_invalid_adds_are_422(shop: Shop, shopper: dict[str, str], body: Any) -> None:
    with redis_unchanged(shop):
        response = await shop.client.post(
            f"{shop.inventory}/cart/items", json=body, headers=shopper
        )
        assert_refused(response, 422)


async def test_quantity_errors_say_what_is_allowed(shop: Shop, shopper: dict[str, str]) -> None:
    for quantity in (0, -5, 10**30):
        response = await shop.add(shopper, "mug", quantity)
        assert assert_refused(response, 422) == "quantity must be an integer from 1 to 99"


async def test_an_unknown_item_is_404(shop: Shop, shopper: dict[str, str]) -> None:
    with redis_unchanged(shop):
        response = await shop.add(shopper, "no-such-item")
        assert assert_refused(response, 404) == "Item 'no-such-item' not found"
        response = await shop.client.put(
            f"{shop.inventory}/cart/items/no-such-item", json={"quantity": 1}, headers=shopper
        )
        assert_refused(response, 404)
        assert_refused(await shop.client.get(f"{shop.inventory}/items/no-such-item"), 404)


async def test_more_than_the_stock_is_409(shop: Shop, shopper: dict[str, str]) -> None:
    with redis_unchanged(shop):
        assert assert_refused(await shop.add(shopper, "cap", 2), 409) == "Only 1 of 'cap' in stock"
        # 2 mugs are in the cart already: 2 + 9 > 10.
        assert assert_refused(await shop.add(shopper, "mug", 9), 409) == "Only 10 of 'mug' in stock"
        response = await shop.client.put(
            f"{shop.inventory}/cart/items/mug", json={"quantity": 11}, headers=shopper
        )
        assert_refused(response, 409)


async def test_a_line_over_the_cap_is_422(shop: Shop, shopper: dict[str, str]) -> None:
    assert (await shop.add(shopper, "bulk", 60)).status_code == 201
    with redis_unchanged(shop):
        detail = assert_refused(await shop.add(shopper, "bulk", 40), 422)
        assert detail == "A cart line holds at most 99 units; 60 of 'bulk' already in the cart"
        response = await shop.client.put(
            f"{shop.inventory}/cart/items/bulk", json={"quantity": 100}, headers=shopper
        )
        assert_refused(response, 422)
    assert (await shop.add(shopper, "bulk", 39)).status_code == 201


# --- Item ids in paths ---------------------------------------------------------------------

BAD_PATH_IDS = {
    "too long": ("m" * 65, 422),
    "8000 characters": ("m" * 8000, 422),
    "NUL": ("mug%00", 422),
    "non-ASCII letter": ("m%C3%BCg", 422),
    "zero-width space": ("mug%E2%80%8B", 422),
    "brace": ("mug{x}", 422),
    "star": ("mug*", 422),
    "space": ("mug 2", 422),
    "colon": ("sf:stock", 422),
    "slash": ("mug/2", 404),
    "encoded slash": ("mug%2F2", 404),
}


@pytest.mark.parametrize(("item_id", "status"), BAD_PATH_IDS.values(), ids=BAD_PATH_IDS.keys())
async def test_bad_item_ids_in_paths_are_refused(
    shop: Shop, shopper: dict[str, str], item_id: str, status: int
) -> None:
    with redis_unchanged(shop):
        requests = [
            shop.client.get(f"{shop.inventory}/items/{item_id}"),
            shop.client.put(
                f"{shop.inventory}/cart/items/{item_id}", json={"quantity": 1}, headers=shopper
            ),
            shop.client.delete(f"{shop.inventory}/cart/items/{item_id}", headers=shopper),
            shop.client.put(
                f"{shop.inventory}/items/{item_id}",
                json={"name": "Evil", "price_cents": 1, "stock": 1},
                headers={"X-Admin-Token": shop.stack.admin_token},
            ),
        ]
        for request in requests:
            assert_refused(await request, status)


@pytest.mark.parametrize("quantity", [-1, 100, 10**30, "1", 1.5, None])
async def test_bad_quantities_set_on_a_line_are_422(
    shop: Shop, shopper: dict[str, str], quantity: object
) -> None:
    with redis_unchanged(shop):
        response = await shop.client.put(
            f"{shop.inventory}/cart/items/mug", json={"quantity": quantity}, headers=shopper
        )
        assert_refused(response, 422)


# --- Oversized bodies and other content types ----------------------------------------------

SIZE_LIMITED = {
    "add to cart": ("inventory", "post", "/cart/items"),
    "set a line": ("inventory", "put", "/cart/items/mug"),
    "put an item": ("inventory", "put", "/items/mug"),
    "checkout": ("checkout", "post", "/checkout"),
}


async def _chunks(body: bytes, size: int = 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("streamed", [False, True], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("service", "method", "path"), SIZE_LIMITED.values(), ids=SIZE_LIMITED.keys()
)
async def test_oversized_bodies_are_413(
    shop: Shop, shopper: dict[str, str], service: str, method: str, path: str, streamed: bool
) -> None:
    body = json.dumps({"item": {"id": "mug"}, "quantity": 1, "pad": OVERSIZED_PAD}).encode()
    assert len(body) > 16 * 1024
    headers = {**shopper, "X-Admin-Token": shop.stack.admin_token}
    headers["Content-Type"] = "application/json"
    content: bytes | AsyncIterator[bytes] = _chunks(body) if streamed else body
    with redis_unchanged(shop):
        request = shop.client.build_request(
            method.upper(), getattr(shop, service) + path, content=content, headers=headers
        )
        assert ("content-length" in request.headers) is not streamed
        assert (request.headers.get("transfer-encoding") == "chunked") is streamed
        response = await shop.client.send(request)
        assert assert_refused(response, 413) == "Request body larger than 16384 bytes"


async def test_a_body_just_under_the_limit_is_read(shop: Shop, shopper: dict[str, str]) -> None:
    """The limit is not set lower than it says: a 16 KiB body gets to validation."""
    body = json.dumps({"item": {"id": "mug"}, "pad": ""}).encode()
    body = body.replace(b'""', b'"' + b"x" * (16 * 1024 - len(body)) + b'"')
    assert len(body) == 16 * 1024
    detail = assert_refused(
        await post_json(shop, f"{shop.inventory}/cart/items", body, **shopper), 422
    )
    assert detail[0]["type"] == "extra_forbidden"


NOT_JSON = {
    "form": ("application/x-www-form-urlencoded", b"item=mug&quantity=1"),
    "text with json in it": ("text/plain", b'{"item": {"id": "mug"}, "quantity": 1}'),
    "xml": ("application/xml", b"<item id='mug'/>"),
}


@pytest.mark.parametrize(("content_type", "body"), NOT_JSON.values(), ids=NOT_JSON.keys())
@pytest.mark.parametrize(
    ("service", "path"),
    [("inventory", "/cart/items"), ("checkout", "/checkout")],
    ids=["add to cart", "checkout"],
)
async def test_bodies_that_are_not_json_are_415(
    shop: Shop, shopper: dict[str, str], service: str, path: str, content_type: str, body: bytes
) -> None:
    with redis_unchanged(shop):
        response = await shop.client.post(
            getattr(shop, service) + path,
            content=body,
            headers={**shopper, "Content-Type": content_type},
        )
        detail = assert_refused(response, 415)
        assert detail == "Send the request body as JSON, with Content-Type: application/json"


BODY_ROUTES = {
    "POST /cart/items": ("inventory", "POST", "/cart/items", {"item": {"id": "mug"}}),
    "PUT /cart/items/mug": ("inventory", "PUT", "/cart/items/mug", {"quantity": 0}),
    "POST /Cart/Item": ("inventory", "POST", "/Cart/Item", {"item": {"id": "mug"}}),
    "POST /checkout": ("checkout", "POST", "/checkout", {"payment": {"token": "tok_visa"}}),
    "PATCH /Cart/checkout": ("checkout", "PATCH", "/Cart/checkout", {"payment": {"token": "x"}}),
    "PUT /items/mug (admin)": ("inventory", "PUT", "/items/mug", NEW_ITEM_BODY),
}


@pytest.mark.parametrize(
    ("service", "method", "path", "body"), BODY_ROUTES.values(), ids=BODY_ROUTES.keys()
)
async def test_valid_json_without_a_content_type_is_415(
    shop: Shop, shopper: dict[str, str], service: str, method: str, path: str, body: Any
) -> None:
    """Was a 422 that called valid JSON invalid."""
    headers = {**shopper, "X-Admin-Token": shop.stack.admin_token}
    with redis_unchanged(shop):
        response = await shop.client.request(
            method, getattr(shop, service) + path, content=json.dumps(body), headers=headers
        )
        assert "content-type" not in response.request.headers
        detail = assert_refused(response, 415)
        assert detail == "Send the request body as JSON, with Content-Type: application/json"


@pytest.mark.parametrize(
    ("service", "method", "path", "body"), BODY_ROUTES.values(), ids=BODY_ROUTES.keys()
)
async def test_a_key_given_twice_is_422_on_every_body_route(
    shop: Shop, shopper: dict[str, str], service: str, method: str, path: str, body: Any
) -> None:
    """The admin route kept the last of the two (200, and the item changed)."""
    first, *_ = body
    doubled = json.dumps(body)[:-1] + f", {json.dumps(first)}: {json.dumps(body[first])}}}"
    assert json.loads(doubled) == body
    headers = {**shopper, "X-Admin-Token": shop.stack.admin_token}
    with redis_unchanged(shop):
        response = await shop.client.request(
            method,
            getattr(shop, service) + path,
            content=doubled,
            headers={**headers, "Content-Type": "application/json"},
        )
        detail = assert_refused(response, 422)
        assert detail[0]["type"] == "json_invalid"
        assert detail[0]["ctx"]["error"] == f"Duplicate key {first!r}"


@pytest.mark.usefixtures("shopper")
@pytest.mark.parametrize(
    "admin_headers",
    [{}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": ""}],
    ids=["no header", "wrong token", "empty token"],
)
@pytest.mark.parametrize(
    "body",
    [b'{"name": ', b"not json", b'{"name": "Mug", "name": "Evil"}', b"[]"],
    ids=["truncated", "not json", "duplicate key", "not an object"],
)
async def test_admin_calls_without_the_token_are_403_whatever_the_body(
    shop: Shop, admin_headers: dict[str, str], body: bytes
) -> None:
    """The body was read first: a malformed one got 422, telling a caller without the token
    how the route parses."""
    with redis_unchanged(shop):
        response = await shop.client.put(
            f"{shop.inventory}/items/mug",
            content=body,
            headers={**admin_headers, "Content-Type": "application/json"},
        )
        assert_refused(response, 403)


@pytest.mark.usefixtures("shopper")
@pytest.mark.parametrize(
    ("service", "method", "path"),
    [route[:3] for name, route in BODY_ROUTES.items() if "admin" not in name],
    ids=[name for name in BODY_ROUTES if "admin" not in name],
)
async def test_cart_calls_without_a_session_are_401_whatever_the_body(
    shop: Shop, service: str, method: str, path: str
) -> None:
    with redis_unchanged(shop):
        response = await shop.client.request(
            method,
            getattr(shop, service) + path,
            content=b'{"item": ',
            headers={"Content-Type": "application/json"},
        )
        assert_refused(response, 401)


async def test_ids_with_a_trailing_newline_are_refused(shop: Shop, shopper: dict[str, str]) -> None:
    """Every pattern matches the whole value: none lets a trailing newline through."""
    admin = {"X-Admin-Token": shop.stack.admin_token}
    with redis_unchanged(shop):
        for response in (
            await shop.client.get(f"{shop.inventory}/items/mug%0A"),
            await shop.client.put(f"{shop.inventory}/items/mug%0A", json=NEW_ITEM, headers=admin),
            await shop.client.delete(f"{shop.inventory}/cart/items/mug%0A", headers=shopper),
            await shop.client.get(f"{shop.checkout}/orders/{'0' * 32}%0A", headers=shopper),
            await shop.client.post(
                f"{shop.checkout}/checkout",
                json={"payment": {"token": "tok_visa\n"}},
                headers=shopper,
            ),
        ):
            assert_refused(response, 422)


# --- Checkout ------------------------------------------------------------------------------

INVALID_CHECKOUTS: dict[str, Any] = {
    "no body": None,
    "no payment": {},
    "payment as a string": {"payment": "tok_visa"},
    "payment without a token": {"payment": {}},
    "empty token": {"payment": {"token": ""}},
    "token with a space": {"payment": {"token": "tok visa"}},
    "token too long": {"payment": {"token": "t" * 129}},
    "token as a number": {"payment": {"token": 4242424242424242}},
    "unknown field in payment": {"payment": {"token": "tok_visa", "cvv": "123"}},
    "unknown field": {"payment": {"token": "tok_visa"}, "total_cents": 1},
}


@pytest.mark.parametrize("body", INVALID_CHECKOUTS.values(), ids=INVALID_CHECKOUTS.keys())
async def test_invalid_payments_are_422(shop: Shop, shopper: dict[str, str], body: Any) -> None:
    with redis_unchanged(shop):
        response = await shop.client.post(f"{shop.checkout}/checkout", json=body, headers=shopper)
        assert_refused(response, 422)


@pytest.mark.usefixtures("shopper")
@pytest.mark.parametrize("key", [None, "empty-cart-attempt-1"], ids=["no key", "idempotency key"])
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/checkout"), ("PATCH", "/Cart/checkout")],
    ids=["checkout", "legacy checkout"],
)
async def test_checking_out_an_empty_cart_is_400(
    shop: Shop, method: str, path: str, key: str | None
) -> None:
    empty = await shop.new_session()
    headers = {**empty, **({"Idempotency-Key": key} if key else {})}
    with redis_unchanged(shop):
        response = await shop.client.request(
            method, shop.checkout + path, json={"payment": {"token": "tok_visa"}}, headers=headers
        )
        assert response.status_code == 400
        assert response.json() == CART_DETAIL_EMPTY


INVALID_IDEMPOTENCY_KEYS = {
    "256 characters": "k" * 256,
    "1000 characters": "k" * 1000,
    "empty": "",
    "with a space": "has space",
    "with a tab": "tab\tinside",
}


@pytest.mark.parametrize(
    "key", INVALID_IDEMPOTENCY_KEYS.values(), ids=INVALID_IDEMPOTENCY_KEYS.keys()
)
async def test_invalid_idempotency_keys_are_422(
    shop: Shop, shopper: dict[str, str], key: str
) -> None:
    with redis_unchanged(shop):
        response = await shop.client.post(
            f"{shop.checkout}/checkout",
            json={"payment": {"token": "tok_visa"}},
            headers={**shopper, "Idempotency-Key": key},
        )
        assert_refused(response, 422)


async def test_bad_order_ids_are_refused(shop: Shop, shopper: dict[str, str]) -> None:
    with redis_unchanged(shop):
        unknown = await shop.client.get(
            f"{shop.checkout}/orders/{uuid.uuid4().hex}", headers=shopper
        )
        assert assert_refused(unknown, 404) == "Order not found"
        for order_id in ("not-an-order", "0" * 33, "sf:stock", "*"):
            response = await shop.client.get(f"{shop.checkout}/orders/{order_id}", headers=shopper)
            assert_refused(response, 422)


# --- Session tokens ------------------------------------------------------------------------


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {"sub": uuid.uuid4().hex, "iat": now, "exp": now + 600}
    claims.update(overrides)
    return {key: value for key, value in claims.items() if value is not None}


def _bad_authorization(kind: str, secret: str, valid_token: str) -> dict[str, str]:
    """The headers of a request that carries a bad credential of `kind`."""
    now = int(time.time())
    if kind == "missing":
        return {}
    if kind == "basic scheme":
        return {"Authorization": "Basic " + base64.b64encode(b"user:password").decode()}
    if kind == "valid token, no scheme":
        return {"Authorization": valid_token}
    if kind == "garbage":
        return {"Authorization": "Bearer not-a-jwt"}
    if kind == "empty bearer":
        return {"Authorization": "Bearer"}
    tokens = {
        "expired": lambda: jwt.encode(_claims(iat=now - 7200, exp=now - 3600), secret, "HS256"),
        "wrong key": lambda: jwt.encode(_claims(), "another-secret-" + "k" * 49, "HS256"),
        "alg none": lambda: f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(_claims())}.",
        "alg none, signature kept": lambda: (
            _b64({"alg": "none", "typ": "JWT"}) + "." + ".".join(valid_token.split(".")[1:])
        ),
        "HS512 with the secret": lambda: jwt.encode(_claims(), secret, "HS512"),
        "no exp": lambda: jwt.encode(_claims(exp=None), secret, "HS256"),
        "future nbf": lambda: jwt.encode(_claims(nbf=now + 600), secret, "HS256"),
        "sub with key syntax": lambda: jwt.encode(_claims(sub="x}:*{y"), secret, "HS256"),
        # `^...$` with re.match let one trailing newline through into the Redis key names.
        "sub with a trailing newline": lambda: jwt.encode(
            _claims(sub=uuid.uuid4().hex + "\n"), secret, "HS256"
        ),
        "tampered": lambda: ".".join(
            [valid_token.split(".")[0], _b64(_claims()), valid_token.split(".")[2]]
        ),
    }
    return {"Authorization": f"Bearer {tokens[kind]()}"}


BAD_CREDENTIALS = [
    "missing",
    "basic scheme",
    "valid token, no scheme",
    "garbage",
    "empty bearer",
    "expired",
    "wrong key",
    "alg none",
    "alg none, signature kept",
    "HS512 with the secret",
    "no exp",
    "future nbf",
    "sub with key syntax",
    "sub with a trailing newline",
    "tampered",
]
SESSION_ROUTES = {
    "GET /cart (inventory)": ("inventory", "GET", "/cart", None),
    "GET /cart (checkout)": ("checkout", "GET", "/cart", None),
    "POST /cart/items": ("inventory", "POST", "/cart/items", {"item": {"id": "mug"}}),
    "PUT /cart/items/mug": ("inventory", "PUT", "/cart/items/mug", {"quantity": 0}),
    "DELETE /cart/items/mug": ("inventory", "DELETE", "/cart/items/mug", None),
    "POST /checkout": ("checkout", "POST", "/checkout", {"payment": {"token": "tok_visa"}}),
    "GET /orders/{id}": ("checkout", "GET", f"/orders/{uuid.uuid4().hex}", None),
    "POST /Cart/Item": ("inventory", "POST", "/Cart/Item", {"item": {"id": "mug"}}),
    "PATCH /Cart/checkout": (
        "checkout",
        "PATCH",
        "/Cart/checkout",
        {"payment": {"token": "tok_visa"}},
    ),
}


@pytest.mark.parametrize("kind", BAD_CREDENTIALS)
@pytest.mark.parametrize(
    ("service", "method", "path", "body"), SESSION_ROUTES.values(), ids=SESSION_ROUTES.keys()
)
async def test_bad_credentials_are_401_with_www_authenticate(
    shop: Shop,
    shopper: dict[str, str],
    service: str,
    method: str,
    path: str,
    body: Any,
    kind: str,
) -> None:
    valid_token = shopper["Authorization"].removeprefix("Bearer ")
    headers = _bad_authorization(kind, shop.stack.token_secret, valid_token)
    with redis_unchanged(shop):
        response = await shop.client.request(
            method, getattr(shop, service) + path, json=body, headers=headers
        )
        assert_refused(response, 401)
        assert response.headers["www-authenticate"] == "Bearer"


# --- One session against another -----------------------------------------------------------


async def test_a_session_cannot_see_or_change_another_sessions_cart_or_order(
    shop: Shop, shopper: dict[str, str]
) -> None:
    owner_cart = (await shop.cart(shopper)).json()
    paid_by_owner = await shop.new_session()
    await shop.add(paid_by_owner, "cap")
    order = (await shop.pay(paid_by_owner)).json()["order"]
    intruder = await shop.new_session()

    with redis_unchanged(shop):
        # Reads: the intruder only ever sees its own (empty) cart, never the order.
        for service in (shop.inventory, shop.checkout):
            seen = (await shop.cart(intruder, service)).json()
            assert seen["items"] == []
            assert seen["session_id"] != owner_cart["session_id"]
        response = await shop.client.get(f"{shop.checkout}/orders/{order['id']}", headers=intruder)
        assert assert_refused(response, 404) == "Order not found"
        # Changes aimed at lines the owner has land in the intruder's own (empty) cart.
        response = await shop.client.delete(f"{shop.inventory}/cart/items/mug", headers=intruder)
        assert response.json()["line_count"] == 0
        response = await shop.client.put(
            f"{shop.inventory}/cart/items/mug", json={"quantity": 0}, headers=intruder
        )
        assert response.json()["line_count"] == 0
        # A checkout orders the intruder's cart, which is empty.
        response = await shop.pay(intruder)
        assert response.json() == CART_DETAIL_EMPTY
        # The owner's session id in a token the intruder signs is refused.
        forged = jwt.encode(
            _claims(sub=owner_cart["session_id"]), "intruder-secret-" + "i" * 48, "HS256"
        )
        response = await shop.cart({"Authorization": f"Bearer {forged}"})
        assert_refused(response, 401)
        # A session id sent as a header or query parameter is not a credential.
        response = await shop.client.get(
            f"{shop.checkout}/cart",
            params={"session_id": owner_cart["session_id"]},
            headers={**intruder, "X-Session-ID": owner_cart["session_id"]},
        )
        assert response.json()["session_id"] != owner_cart["session_id"]

    assert (await shop.cart(shopper)).json() == owner_cart
    response = await shop.client.get(f"{shop.checkout}/orders/{order['id']}", headers=paid_by_owner)
    assert response.json() == order


# --- The admin API -------------------------------------------------------------------------

NEW_ITEM = {"name": "Evil mug", "price_cents": 1, "stock": 1_000_000}


@pytest.mark.usefixtures("shopper")
@pytest.mark.parametrize(
    "admin_headers",
    [{}, {"X-Admin-Token": "wrong"}, {"X-Admin-Token": ""}, {"Authorization": "Bearer x"}],
    ids=["no header", "wrong token", "empty token", "bearer instead"],
)
async def test_admin_calls_without_the_admin_token_are_403(
    shop: Shop, admin_headers: dict[str, str]
) -> None:
    with redis_unchanged(shop):
        for item_id in ("mug", "new-item"):
            response = await shop.client.put(
                f"{shop.inventory}/items/{item_id}", json=NEW_ITEM, headers=admin_headers
            )
            assert_refused(response, 403)


@pytest.mark.usefixtures("shopper")
async def test_admin_token_prefix_or_extension_is_403(shop: Shop) -> None:
    token = shop.stack.admin_token
    with redis_unchanged(shop):
        for presented in (token[:-1], token + "a", token.upper(), token[:-1] + "b"):
            response = await shop.client.put(
                f"{shop.inventory}/items/mug", json=NEW_ITEM, headers={"X-Admin-Token": presented}
            )
            assert assert_refused(response, 403) == "Invalid admin token"


INVALID_ITEMS: dict[str, Any] = {
    "empty name": {"name": "  ", "price_cents": 1, "stock": 1},
    "negative price": {"name": "Mug", "price_cents": -1, "stock": 1},
    "negative stock": {"name": "Mug", "price_cents": 1, "stock": -1},
    "huge stock": {"name": "Mug", "price_cents": 1, "stock": 10**12},
    "price as a string": {"name": "Mug", "price_cents": "100", "stock": 1},
    "unknown field": {"name": "Mug", "price_cents": 1, "stock": 1, "id": "other"},
    "missing stock": {"name": "Mug", "price_cents": 1},
}


@pytest.mark.usefixtures("shopper")
@pytest.mark.parametrize("item", INVALID_ITEMS.values(), ids=INVALID_ITEMS.keys())
async def test_invalid_items_are_422(shop: Shop, item: Any) -> None:
    with redis_unchanged(shop):
        response = await shop.client.put(
            f"{shop.inventory}/items/mug",
            json=item,
            headers={"X-Admin-Token": shop.stack.admin_token},
        )
        assert_refused(response, 422)


@pytest.mark.usefixtures("shopper")
async def test_without_admin_token_configured_the_admin_api_is_disabled(shop: Shop) -> None:
    service = start_service("inventory", shop.stack.redis_url, ADMIN_TOKEN=None)
    try:
        with redis_unchanged(shop):
            for headers in ({}, {"X-Admin-Token": shop.stack.admin_token}, {"X-Admin-Token": ""}):
                response = await shop.client.put(
                    f"{service.url}/items/mug", json=NEW_ITEM, headers=headers
                )
                detail = assert_refused(response, 403)
                assert "disabled" in detail
                assert "ADMIN_TOKEN" in detail
            # The rest of the service works.
            assert (await shop.client.get(f"{service.url}/items/mug")).status_code == 200
    finally:
        stop_service(service)
