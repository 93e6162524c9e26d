"""`Endpoints` answer exactly as FastAPI's own handler does, for good and bad requests, and
honour `app.dependency_overrides` however their routes joined the app."""

from __future__ import annotations

from typing import Annotated

import httpx
import orjson
import pytest
from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from cartlib.web.endpoints import Endpoints
from cartlib.web.models import AddToCart, ItemId
from cartlib.web.responses import JSONBytes

bearer = HTTPBearer(auto_error=False)
calls: list[str] = []


async def tenant(request: Request) -> str:
    calls.append("tenant")
    return request.headers.get("x-tenant", "default")


async def session(
    tenant: Annotated[str, Depends(tenant)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    if credentials is None:
        raise HTTPException(401, "Missing bearer token")
    return f"{tenant}/{credentials.credentials}"


async def gate(request: Request) -> None:
    """A check that returns nothing, used as `dependencies=[Depends(gate)]`."""
    if request.headers.get("x-pass") != "yes":
        raise HTTPException(403, "Not allowed")


def routes(router: APIRouter | Endpoints) -> APIRouter | Endpoints:
    @router.post("/items/{item_id}", status_code=201)
    async def add(
        who: Annotated[str, Depends(session)],
        same_tenant: Annotated[str, Depends(tenant)],
        item_id: Annotated[ItemId, Path()],
        body: AddToCart,
        key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=8)] = None,
    ) -> JSONBytes:
        echoed = {
            "who": who,
            "tenant": same_tenant,
            "item": item_id,
            "key": key,
            "body": body.model_dump(),
        }
        return JSONBytes(orjson.dumps(echoed), 201)

    @router.post("/guarded", status_code=201, dependencies=[Depends(gate)])
    async def guarded(body: AddToCart) -> JSONBytes:
        return JSONBytes(orjson.dumps(body.model_dump()), 201)

    return router


standard = routes(APIRouter(prefix="/standard"))
served = routes(Endpoints(prefix="/lean"))
assert isinstance(standard, APIRouter) and isinstance(served, Endpoints)
app = FastAPI()
app.include_router(standard)
app.router.routes.extend(served.routes)

GOOD_BODY = b'{"item": {"id": "mug"}, "quantity": 2}'
JSON = {"content-type": "application/json"}
AUTH = {"authorization": "Bearer abc", **JSON}
REQUESTS = {
    "good": ("/items/mug", AUTH, GOOD_BODY),
    "good with key and tenant": (
        "/items/mug",
        {**AUTH, "idempotency-key": "k1", "x-tenant": "t"},
        GOOD_BODY,
    ),
    "no token": ("/items/mug", JSON, GOOD_BODY),
    "malformed json": ("/items/mug", AUTH, b'{"item": '),
    "empty body": ("/items/mug", AUTH, b""),
    "wrong types": ("/items/mug", AUTH, b'{"item": {"id": "mug"}, "quantity": "2"}'),
    "unknown field": ("/items/mug", AUTH, b'{"item": {"id": "mug"}, "extra": 1}'),
    "body not an object": ("/items/mug", AUTH, b"[1, 2]"),
    "form content type": (
        "/items/mug",
        {"authorization": "Bearer abc", "content-type": "application/x-www-form-urlencoded"},
        GOOD_BODY,
    ),
    "no content type": ("/items/mug", {"authorization": "Bearer abc"}, GOOD_BODY),
    "bad path parameter": ("/items/bad%20id", AUTH, GOOD_BODY),
    "header too long": ("/items/mug", {**AUTH, "idempotency-key": "x" * 9}, GOOD_BODY),
    "path and body both bad": ("/items/{x}", AUTH, b'{"quantity": true}'),
    "not utf-8": ("/items/mug", AUTH, b'{"item": {"id": "\xff"}}'),
    "json with charset": (
        "/items/mug",
        {"authorization": "Bearer abc", "content-type": "application/json; charset=utf-8"},
        GOOD_BODY,
    ),
}


@pytest.fixture
async def client() -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


# Where Endpoints answer otherwise, on purpose: (FastAPI's status, theirs).
DIFFERENCES = {
    # A body that does not say it is JSON is not parsed as JSON: 415, not "not an object".
    "form content type": (422, 415),
    "no content type": (422, 415),
    # Credentials are checked before the body is read.
    "no token, malformed json": (422, 401),
    "gate closed, malformed json": (422, 403),
}
REQUESTS.update(
    {
        "no token, malformed json": ("/items/mug", JSON, b'{"item": '),
        "gate closed, malformed json": ("/guarded", JSON, b'{"item": '),
        "gate closed": ("/guarded", JSON, GOOD_BODY),
        "gate open": ("/guarded", {**JSON, "x-pass": "yes"}, GOOD_BODY),
        "gate open, malformed json": ("/guarded", {**JSON, "x-pass": "yes"}, b'{"item": '),
    }
)


@pytest.mark.parametrize("name", REQUESTS)
async def test_lean_answers_as_fastapi_does(client: httpx.AsyncClient, name: str) -> None:
    path, headers, body = REQUESTS[name]
    expected = await client.post(f"/standard{path}", headers=headers, content=body)
    actual = await client.post(f"/lean{path}", headers=headers, content=body)
    if name in DIFFERENCES:
        assert (expected.status_code, actual.status_code) == DIFFERENCES[name]
        assert set(actual.json()) == {"detail"}
        return
    assert (actual.status_code, actual.json()) == (expected.status_code, expected.json())
    assert actual.headers.get("www-authenticate") == expected.headers.get("www-authenticate")


async def test_dependencies_without_a_name_run(client: httpx.AsyncClient) -> None:
    """`dependencies=[Depends(check)]` on the route: skipped by LeanRoute once, so the admin
    route, once served that way, took any token."""
    closed = await client.post("/lean/guarded", headers=JSON, content=GOOD_BODY)
    assert (closed.status_code, closed.json()) == (403, {"detail": "Not allowed"})


async def test_a_dependency_used_twice_runs_once_per_request(client: httpx.AsyncClient) -> None:
    calls.clear()
    response = await client.post("/lean/items/mug", headers=AUTH, content=GOOD_BODY)
    assert response.status_code == 201
    assert calls == ["tenant"]


def test_an_endpoint_it_cannot_serve_is_refused_when_declared() -> None:
    """No silent fallback: what `Endpoints` cannot serve as FastAPI would fails at import."""
    endpoints = Endpoints()

    async def returns_a_dict() -> dict[str, str]:
        return {}

    async def takes_a_query(q: str) -> JSONBytes:
        return JSONBytes(q.encode())

    def not_async() -> JSONBytes:
        return JSONBytes(b"{}")

    async def two_bodies(one: AddToCart, two: AddToCart) -> JSONBytes:
        return JSONBytes(orjson.dumps([one.model_dump(), two.model_dump()]))

    for endpoint in (returns_a_dict, takes_a_query, not_async, two_bodies):
        with pytest.raises(TypeError):
            endpoints.get("/x")(endpoint)  # type: ignore[arg-type]


async def test_dependency_overrides_are_honoured(client: httpx.AsyncClient) -> None:
    async def other_tenant() -> str:
        return "overridden"

    app.dependency_overrides[tenant] = other_tenant
    try:
        response = await client.post("/lean/items/mug", headers=AUTH, content=GOOD_BODY)
    finally:
        app.dependency_overrides.clear()
    assert response.json()["tenant"] == "overridden"


def test_the_services_routes_are_served_by_endpoints() -> None:
    """Every route of both services but the probes, scrapes and docs pages is a plain
    Starlette route: none goes through FastAPI's generic solver."""
    from fastapi.routing import APIRoute
    from starlette.routing import Route

    import checkout.app
    import inventory.app
    from tests.cartlib.conftest import make_settings

    settings = make_settings("redis://127.0.0.1:1/0")
    operations = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs", "/redoc"}
    for service in (inventory.app, checkout.app):
        service_app = service.create_app(settings=settings)
        documented = set(service_app.openapi()["paths"]) - operations
        served = {
            route.path
            for route in service_app.router.routes
            if isinstance(route, Route) and not isinstance(route, APIRoute)
        }
        assert documented
        assert documented <= served, documented - served
