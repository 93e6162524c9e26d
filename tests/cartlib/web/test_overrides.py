"""`app.dependency_overrides` reaches every route of both services, and the stores and the
payment processor are given through the app factories: a test or a deployment swaps them
without editing `checkout/` or `inventory/`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI

import checkout.app
import inventory.app
from cartlib.store import PaymentResult, Session, Stores
from cartlib.web import get_stores
from cartlib.web.app import create_app
from cartlib.web.deps import current_session
from cartlib.web.endpoints import Endpoints
from cartlib.web.responses import JSONBytes
from checkout.app import get_payments
from checkout.payments import TestProcessor
from tests.cartlib.conftest import make_settings

SESSION = Session(id="overridden-session", expires_at=2**40)
JSON = {"content-type": "application/json"}
# Each service's routes that take a session, as (method, path, body).
# Each service's routes that take a session, as (method, path, body, status): a 200 or 201
# is only possible with the overridden session's cart in the overridden stores.
SESSION_ROUTES: dict[str, list[tuple[str, str, Any, int]]] = {
    "inventory": [
        ("GET", "/cart", None, 200),
        ("POST", "/cart/items", {"item": {"id": "mug"}, "quantity": 2}, 201),
        ("PUT", "/cart/items/mug", {"quantity": 3}, 200),
        ("DELETE", "/cart/items/mug", None, 200),
        ("POST", "/Cart/Item", {"item": {"id": "mug"}}, 201),
    ],
    "checkout": [
        ("GET", "/cart", None, 200),
        ("POST", "/checkout", {"payment": {"token": "tok_visa"}}, 200),
        ("PATCH", "/Cart/checkout", {"payment": {"token": "tok_visa"}}, 200),
        ("GET", "/orders/" + "0" * 32, None, 404),
    ],
}


class RecordingProcessor(TestProcessor):
    """Approves `tok_visa` as the test processor does, noting each charge's reference."""

    def __init__(self) -> None:
        super().__init__()
        self.references: list[str] = []

    async def charge(self, *, amount_cents: int, token: str, reference: str) -> PaymentResult:
        self.references.append(reference)
        return await super().charge(amount_cents=amount_cents, token=token, reference=reference)


async def overridden_session() -> Session:
    return SESSION


@pytest.fixture
async def own_stores(redis_url: str) -> AsyncIterator[Stores]:
    """Stores under a key prefix of their own, which no app builds from its settings."""
    stores = Stores.from_settings(make_settings(redis_url, redis_key_prefix="own:"))
    await stores.redis.flushdb()
    yield stores
    await stores.aclose()


def client(app: FastAPI) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://test")


async def stock(stores: Stores) -> None:
    from cartlib.web.models import ItemIn

    await stores.catalog.put("mug", ItemIn(name="Mug", price_cents=500, stock=100))


@pytest.mark.parametrize("service", ["inventory", "checkout"])
async def test_overrides_reach_every_session_route(
    service: str, redis_url: str, own_stores: Stores
) -> None:
    """No bearer token is sent: every route answers for the overridden session, from the
    overridden stores (the items exist under their key prefix only)."""
    factory = inventory.app.create_app if service == "inventory" else checkout.app.create_app
    app = factory(settings=make_settings(redis_url, redis_key_prefix="unused:"))
    payments = RecordingProcessor()
    app.dependency_overrides[current_session] = overridden_session
    app.dependency_overrides[get_stores] = lambda: own_stores
    app.dependency_overrides[get_payments] = lambda: payments
    await stock(own_stores)
    async with app.router.lifespan_context(app), client(app) as http:
        for method, path, body, status in SESSION_ROUTES[service]:
            if service == "checkout" and method != "GET":
                await own_stores.carts.add(SESSION.id, "mug", 1)
            response = await http.request(method, path, json=body)
            assert response.status_code == status, (path, response.text)
            if "session_id" in response.text:
                assert response.json()["session_id"] == SESSION.id
    if service == "checkout":
        assert len(payments.references) == 2  # both checkout routes charged through it
    else:
        cart = await own_stores.carts.get(SESSION.id)
        assert b"mug" in cart


async def test_stores_and_payments_given_to_the_factories_are_used(
    redis_url: str, own_stores: Stores
) -> None:
    payments = RecordingProcessor()
    app = checkout.app.create_app(
        settings=make_settings(redis_url), stores=own_stores, payments=payments
    )
    await stock(own_stores)
    issued = own_stores.tokens.mint()
    await own_stores.carts.add(issued.session.id, "mug", 2)
    async with app.router.lifespan_context(app), client(app) as http:
        response = await http.post(
            "/checkout",
            json={"payment": {"token": "tok_visa"}},
            headers={"authorization": f"Bearer {issued.token}"},
        )
    assert response.status_code == 200, response.text
    assert payments.references == [response.json()["order"]["id"]]
    assert (payments.charges, payments.charged_cents) == (1, 1000)
    # The given stores belong to the caller: the app's shutdown left them open.
    assert await own_stores.redis.ping()


async def marker() -> str:
    return "original"


async def replaced() -> str:
    return "overridden"


@pytest.mark.parametrize("joined", ["create_app", "extend", "include_router"])
async def test_overrides_apply_however_a_route_joined_the_app(joined: str, redis_url: str) -> None:
    """The defect LeanRoute had: routes joined with `routes.extend` ignored the overrides."""
    endpoints = Endpoints()
    plain = APIRouter()

    @endpoints.get("/served")
    async def served(value: Annotated[str, Depends(marker)]) -> JSONBytes:
        return JSONBytes(f'"{value}"'.encode())

    @plain.get("/plain")
    async def documented(value: Annotated[str, Depends(marker)]) -> dict[str, Any]:
        return {"value": value}

    if joined == "create_app":
        app = create_app(title="t", routers=[endpoints, plain], settings=make_settings(redis_url))
    else:
        app = FastAPI()
        app.router.routes.extend(endpoints.routes)
        if joined == "extend":
            app.router.routes.extend(plain.routes)
        else:
            app.include_router(plain)
    app.dependency_overrides[marker] = replaced
    async with client(app) as http:
        assert (await http.get("/served")).json() == "overridden"
        if joined != "extend":  # FastAPI's own routes need include_router for that
            assert (await http.get("/plain")).json() == {"value": "overridden"}
