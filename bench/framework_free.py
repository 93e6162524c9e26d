"""add-to-cart without a framework: the budget the framework, dependencies and routing spend.

`install(app)` replaces what serves `POST /cart/items` in an inventory app (`create_app()`)
with `add_to_cart`, a plain ASGI function that does the route's work and nothing else: the
bearer token verified (cached), the JSON body validated with pydantic's `model_validate_json`,
`add_item.lua` through the store (one round trip, its Redis histogram), the line as JSON. It
still runs below `ServiceMiddleware` (request id, the two HTTP metrics, limits), like the
route. What it leaves out, and the route may not: the Starlette request, dependency solving
(and with it `app.dependency_overrides`), the 415 and 422 checks (a duplicated JSON key is not
refused), error answers (a failure is a 500). A benchmark's variant, never served.

    python -m bench.http_protocols --variants floor,limited,framework-free
    python -m bench --framework-free      (make bench with this inventory; results apart)
    python -m bench.framework_free        (the inventory service served this way)
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI
from starlette.types import Receive, Scope, Send

from cartlib.settings import Settings
from cartlib.web import AddToCart, line_change_json
from cartlib.web.server import run
from inventory import app as inventory

_JSON = (b"content-type", b"application/json")


async def add_to_cart(scope: Scope, receive: Receive, send: Send) -> None:
    stores = scope["app"].state.stores
    token = b""
    for name, value in scope["headers"]:
        if name == b"authorization":
            token = value.partition(b" ")[2]
            break
    chunks = []
    more_body = True
    while more_body:
        message = await receive()
        chunks.append(message.get("body", b""))
        more_body = message.get("more_body", False)
    session = stores.tokens.verify(token.decode())
    body = AddToCart.model_validate_json(b"".join(chunks))
    change = await stores.carts.add(session.id, body.item.id, body.quantity)
    answer = line_change_json(session.id, change)
    headers = [(b"content-length", b"%d" % len(answer)), _JSON]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": answer})


def install(app: Any) -> None:
    """Serve `POST /cart/items` of an inventory app with `add_to_cart`: in this app only (the
    route objects are the `Endpoints`' own, shared by every app made from them)."""
    found = [
        index
        for index, route in enumerate(app.served_first)
        if route.path == "/cart/items" and "POST" in (route.methods or ())
    ]
    if len(found) != 1:
        raise RuntimeError("POST /cart/items is not served first in this app")
    shared = app.served_first[found[0]]
    own = copy.copy(shared)
    own.app = add_to_cart
    app.served_first[found[0]] = own
    app.router.routes[app.router.routes.index(shared)] = own


def create_app(*, settings: Settings | None = None) -> FastAPI:
    """The inventory service, add-to-cart served by `add_to_cart`."""
    app = inventory.create_app(settings=settings)
    install(app)
    return app


if __name__ == "__main__":
    run("bench.framework_free:create_app", default_port=8001)
