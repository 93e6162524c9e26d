"""bench/framework_free.py does add-to-cart's work: for a valid add it answers what the
route answers and leaves the same cart in Redis, so what it saves is the framework's cost;
and it changes only the app it is installed in."""

from __future__ import annotations

from typing import Any

import httpx
from redis.asyncio import Redis

from bench import framework_free
from cartlib.store.keys import Keys
from inventory.app import create_app
from tests.cartlib.conftest import make_settings


async def test_answers_as_the_route_and_changes_the_cart_alike(redis_url: str) -> None:
    settings = make_settings(redis_url)
    route, bare = create_app(settings=settings), framework_free.create_app(settings=settings)
    answers = []
    async with route.router.lifespan_context(route), bare.router.lifespan_context(bare):
        for app in (route, bare):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
                token = (await http.post("/sessions")).json()["token"]
                item = (await http.get("/items")).json()["items"][0]["id"]
                response = await http.post(
                    "/cart/items",
                    json={"item": {"id": item}, "quantity": 2},
                    headers={"Authorization": f"Bearer {token}"},
                )
                session_id = response.json()["session_id"]
                answer = {**response.json(), "session_id": "s"}
                answers.append((response.status_code, response.headers["content-type"], answer))
                redis = Redis.from_url(redis_url)
                cart = await redis.hgetall(Keys(settings.redis_key_prefix).cart(session_id))
                await redis.aclose()
                assert cart == {item.encode(): b"2"}
    assert answers[0] == answers[1]
    assert answers[0][0] == 201
    assert answers[0][2]["line"] == {"id": item, "quantity": 2}


def test_only_the_app_it_is_installed_in_changes(redis_url: str) -> None:
    settings = make_settings(redis_url)
    before = create_app(settings=settings)
    bare = framework_free.create_app(settings=settings)
    after = create_app(settings=settings)

    def add_to_cart_app(app: Any) -> Any:
        (route,) = [r for r in app.served_first if r.path == "/cart/items" and "POST" in r.methods]
        assert route in app.router.routes
        return route.app

    assert add_to_cart_app(bare) is framework_free.add_to_cart
    assert add_to_cart_app(before) is not framework_free.add_to_cart
    assert add_to_cart_app(after) is not framework_free.add_to_cart
