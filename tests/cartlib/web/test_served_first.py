"""`create_app` serves the `Endpoints`' routes that lead its table straight from under
`ServiceMiddleware` (`ServedFirst`), without FastAPI's middleware stack and router; the same
endpoints served through that stack (an `Endpoints` router after an `APIRouter`) answer
exactly alike, errors included, and are counted alike."""

from __future__ import annotations

from typing import Annotated

import httpx
import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Request
from prometheus_client import REGISTRY

from cartlib.store import ItemNotFound, StoreUnavailable
from cartlib.web.app import create_app
from cartlib.web.endpoints import Endpoints
from cartlib.web.models import AddToCart
from cartlib.web.responses import JSONBytes
from tests.cartlib.conftest import make_settings


class Boom(RuntimeError):
    """An error no handler knows: a 500, and raised on to the server."""


class Teapot(Exception):
    """An error with a handler of its own, registered after the app was made."""


async def fail_with(x_fail: Annotated[str | None, Header()] = None) -> None:
    failures: dict[str | None, Exception] = {
        "domain": ItemNotFound("Item 'mug' not found"),
        "unavailable": StoreUnavailable(),
        "http": HTTPException(418, "short and stout", headers={"x-why": "tea"}),
        "teapot": Teapot(),
        "unexpected": Boom("a bug"),
    }
    if x_fail in failures:
        raise failures[x_fail]


def routes(router: Endpoints) -> Endpoints:
    @router.post("/things", status_code=201, dependencies=[Depends(fail_with)])
    async def add(body: AddToCart) -> JSONBytes:
        return JSONBytes(orjson.dumps(body.model_dump()), 201)

    @router.get("/things")
    async def read(request: Request) -> JSONBytes:
        return JSONBytes(orjson.dumps({"path": request.url.path}))

    return router


first = routes(Endpoints(prefix="/first"))
after = routes(Endpoints(prefix="/after"))
plain = APIRouter(prefix="/plain")


@plain.get("/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


@pytest.fixture
def app(redis_url: str) -> FastAPI:
    # `after` comes after an APIRouter: its routes are served through FastAPI's stack.
    app = create_app(title="test", routers=[first, plain, after], settings=make_settings(redis_url))

    async def teapot(_request: Request, exc: Exception) -> JSONBytes:
        return JSONBytes(orjson.dumps({"detail": type(exc).__name__}), 418)

    app.add_exception_handler(Teapot, teapot)
    return app


def client(app: FastAPI, *, raise_app_exceptions: bool = False) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


def test_only_the_leading_endpoints_are_served_first(app: FastAPI) -> None:
    served_first = app.served_first  # type: ignore[attr-defined]
    assert [id(route) for route in served_first] == [id(route) for route in first.routes]


GOOD = b'{"item": {"id": "mug"}, "quantity": 2}'
JSON = {"content-type": "application/json"}
CASES = {
    "good": ("POST", {}, GOOD),
    "domain error": ("POST", {"x-fail": "domain"}, GOOD),
    "store unavailable": ("POST", {"x-fail": "unavailable"}, GOOD),
    "http exception": ("POST", {"x-fail": "http"}, GOOD),
    "handler added later": ("POST", {"x-fail": "teapot"}, GOOD),
    "unexpected error": ("POST", {"x-fail": "unexpected"}, GOOD),
    "invalid body": ("POST", {}, b'{"item": {"id": 1}}'),
    "malformed body": ("POST", {}, b'{"item": '),
    "not json": ("POST", {"content-type": "text/plain"}, GOOD),
    "too large": ("POST", {}, b" " * 70_000),
    "read": ("GET", {}, b""),
    "head": ("HEAD", {}, b""),
    "method not allowed": ("PUT", {}, GOOD),
}


def _counts(path: str) -> dict[tuple[str, str], float]:
    """`http_requests_total` of one route template, by method and status."""
    return {
        (sample.labels["method"], sample.labels["status"]): sample.value
        for family in REGISTRY.collect()
        if family.name == "http_requests"
        for sample in family.samples
        if sample.name == "http_requests_total" and sample.labels["handler"] == path
    }


@pytest.mark.parametrize("name", CASES)
async def test_served_first_answers_as_through_the_stack(app: FastAPI, name: str) -> None:
    method, headers, body = CASES[name]
    answers = {}
    async with client(app) as http:
        for prefix in ("first", "after"):
            path = f"/{prefix}/things"
            before = _counts(path)
            response = await http.request(method, path, headers={**JSON, **headers}, content=body)
            counted = {
                key: value - before.get(key, 0.0)
                for key, value in _counts(path).items()
                if value != before.get(key, 0.0)
            }
            response_headers = dict(response.headers)
            # Each request gets a request id of its own, echoed on every answer, 500s included.
            assert response_headers.pop("x-request-id")
            body_seen = response.content.replace(b"/after/", b"/first/")
            answers[prefix] = (response.status_code, response_headers, body_seen, counted)
    assert answers["first"] == answers["after"]
    status, _, _, counted = answers["first"]
    # Counted once, under the route's template; a body refused as too large before routing
    # is counted under "none".
    assert counted == ({} if status == 413 else {(method, str(status)): 1.0})


async def test_an_unexpected_error_reaches_the_server_after_the_500(app: FastAPI) -> None:
    """As Starlette's ServerErrorMiddleware does: the 500 is sent, then the error is raised on,
    so the server logs it (and a test client raises it)."""
    sent: list[int] = []

    async def send(message: dict[str, object]) -> None:
        if message["type"] == "http.response.start":
            sent.append(int(str(message["status"])))

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": GOOD, "more_body": False}

    for prefix in ("first", "after"):
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": f"/{prefix}/things",
            "raw_path": f"/{prefix}/things".encode(),
            "query_string": b"",
            "root_path": "",
            "server": ("test", 80),
            "client": ("127.0.0.1", 1),
            "headers": [(b"content-type", b"application/json"), (b"x-fail", b"unexpected")],
        }
        with pytest.raises(Boom):
            await app(scope, receive, send)  # type: ignore[arg-type]
    assert sent == [500, 500]


async def test_other_routes_still_go_through_the_stack(app: FastAPI) -> None:
    async with client(app) as http:
        assert (await http.get("/plain/ping")).json() == {"pong": "yes"}
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        assert (await http.get("/nowhere")).status_code == 404


async def test_a_path_matched_by_an_earlier_template_is_served_by_that_route(
    redis_url: str,
) -> None:
    # A path without parameters is looked up in a dict, but the table's order still decides:
    # `/shadow/{name}` comes first, so it serves `/shadow/static`, as Starlette's router would.
    router = Endpoints(prefix="/shadow")

    @router.get("/{name}")
    async def by_name(request: Request) -> JSONBytes:
        return JSONBytes(orjson.dumps({"route": "template", **request.path_params}))

    @router.get("/static")
    async def static() -> JSONBytes:
        return JSONBytes(b'{"route": "static"}')

    @router.get("/other/path")
    async def other() -> JSONBytes:
        return JSONBytes(b'{"route": "other"}')

    app = create_app(title="test", routers=[router], settings=make_settings(redis_url))
    async with client(app) as http:
        shadowed = await http.get("/shadow/static")
        unshadowed = await http.get("/shadow/other/path")
        head = await http.head("/shadow/other/path")
        wrong_method = await http.post("/shadow/other/path")
    assert shadowed.json() == {"route": "template", "name": "static"}
    assert unshadowed.json() == {"route": "other"}
    assert (head.status_code, head.content) == (200, b"")
    assert head.headers["content-length"] == unshadowed.headers["content-length"]
    assert wrong_method.status_code == 405
