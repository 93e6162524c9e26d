"""bench/framework_free.py does add-to-cart's work: for a valid add it answers what the
route answers and leaves the same cart in Redis, so what it saves is the framework's cost."""

from __future__ import annotations

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
