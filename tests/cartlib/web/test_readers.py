"""The scope readers (`reads_scope`) give what solving their dependencies gives.

While no dependency is overridden, `Endpoints` read `get_stores` and `current_session` from
the scope instead of solving them. Held here both ways: each reader against its dependency
solved as FastAPI would (same value, or same exception), over generated `Authorization`
headers; and every session route of the inventory answering byte for byte alike on the
reader path and on the solver (an override of a dependency no route uses puts every route
on it), over generated requests, each app on a key prefix of its own in the same Redis.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.requests import Request

import inventory.app
from cartlib.store import Session, Stores
from cartlib.store.auth import ALGORITHM
from cartlib.web.deps import _bearer, current_session, get_stores
from cartlib.web.endpoints import _READERS
from cartlib.web.models import ItemIn
from tests.cartlib.conftest import make_settings

SECRET = make_settings("redis://127.0.0.1:1/0").cart_token_secret.get_secret_value()
SESSION_ID = "0123456789abcdef0123456789abcdef"


def token(*, secret: str = SECRET, expires_in: int = 3600, algorithm: str = ALGORITHM) -> str:
    now = int(time.time())
    claims = {"sub": SESSION_ID, "iat": now, "exp": now + expires_in}
    return jwt.encode(claims, secret, algorithm=algorithm)


VALID = token()
TOKENS = st.sampled_from(
    [
        VALID,
        token(expires_in=-10),
        token(secret="another-secret-" + "x" * 40),
        token(secret=SECRET * 2, algorithm="HS512"),
        VALID[:-2],
        "",
        "not.a.token",
    ]
)
AUTHORIZATION = st.one_of(
    st.builds(
        lambda scheme, space, value, tail: f"{scheme}{space}{value}{tail}",
        st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""]),
        st.sampled_from([" ", "  ", "\t", ""]),
        TOKENS,
        st.sampled_from(["", " ", "  "]),
    ),
    st.text(max_size=40).map(lambda text: text.encode("utf-8").decode("latin-1")),
)
HEADERS = st.lists(
    st.one_of(
        AUTHORIZATION.map(lambda value: (b"authorization", value.encode("latin-1"))),
        st.just((b"x-other", b"1")),
    ),
    max_size=3,
)


class FakeApp:
    """What a reader reads of the app: its state's stores."""

    def __init__(self, stores: Stores) -> None:
        self.state = type("State", (), {"stores": stores})()


async def outcome(call: Any) -> Any:
    try:
        value = call()
        if hasattr(value, "__await__"):
            value = await value
    except Exception as exc:
        return type(exc), str(exc)
    return value


@pytest.fixture(scope="module")
def offline_stores() -> Stores:
    """Stores whose Redis is never reached: reading a session is CPU only."""
    return Stores.from_settings(make_settings("redis://127.0.0.1:1/0"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(headers=HEADERS)
async def test_each_reader_gives_what_its_dependency_solved_gives(
    offline_stores: Stores, headers: list[tuple[bytes, bytes]]
) -> None:
    scope = {"type": "http", "headers": headers, "app": FakeApp(offline_stores)}
    request = Request(scope)

    async def solved_session() -> Session:
        return await current_session(await get_stores(request), await _bearer(request))

    read_session = await outcome(lambda: _READERS[current_session](scope))
    assert read_session == await outcome(solved_session)
    assert _READERS[get_stores](scope) is await get_stores(request) is offline_stores


async def unused() -> None:
    """A dependency of no route: overriding it puts every route on the solver."""


BODIES = st.one_of(
    st.builds(
        lambda item, quantity: {"item": {"id": item}, "quantity": quantity},
        st.sampled_from(["mug", "absent", "Not An Id!"]),
        st.sampled_from([1, 2, 0, -1, 10**9, "2"]),
    ),
    st.just({"item": {"id": "mug"}}),
    st.just({"quantity": 1}),
)
CONTENT_TYPES = st.sampled_from(["application/json", "text/plain", "application/merge+json"])
ROUTES = st.sampled_from(
    [
        ("POST", "/cart/items"),
        ("PUT", "/cart/items/mug"),
        ("DELETE", "/cart/items/mug"),
        ("POST", "/Cart/Item"),
        ("POST", "/sessions"),
    ]
)


@pytest.fixture
async def two_apps(redis7_url: str) -> AsyncIterator[tuple[httpx.AsyncClient, ...]]:
    """The inventory twice over one Redis, each on a key prefix of its own, the second on
    the solver; both with the item `mug`."""
    clients = []
    apps = []
    for prefix in ("read:", "solved:"):
        app = inventory.app.create_app(settings=make_settings(redis7_url, redis_key_prefix=prefix))
        apps.append(app)
    apps[1].dependency_overrides[unused] = unused
    contexts = [app.router.lifespan_context(app) for app in apps]
    for context in contexts:
        await context.__aenter__()
    try:
        for app in apps:
            await app.state.stores.catalog.put(
                "mug", ItemIn(name="Mug", price_cents=500, stock=100)
            )
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            clients.append(httpx.AsyncClient(transport=transport, base_url="http://test"))
        yield tuple(clients)
    finally:
        for http in clients:
            await http.aclose()
        for context in reversed(contexts):
            await context.__aexit__(None, None, None)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(route=ROUTES, headers=HEADERS, body=BODIES, content_type=CONTENT_TYPES)
async def test_the_reader_path_answers_as_the_solver(
    two_apps: tuple[httpx.AsyncClient, httpx.AsyncClient],
    route: tuple[str, str],
    headers: list[tuple[bytes, bytes]],
    body: dict[str, Any],
    content_type: str,
) -> None:
    method, path = route
    request_headers = [*headers, (b"content-type", content_type.encode())]
    answers = []
    for http in two_apps:
        response = await http.request(method, path, json=body, headers=request_headers)
        answers.append(response)
    read, solved = answers
    assert read.status_code == solved.status_code, (read.text, solved.text)
    if path == "/sessions" and read.status_code == 201:
        return  # a new session each: its token and id differ by design
    assert read.content == solved.content
    assert read.headers.get("www-authenticate") == solved.headers.get("www-authenticate")
