"""FastAPI dependencies, declared once as `Annotated` aliases for the routes to use.

`SessionDep` is the article's cart middleware done right: it verifies the bearer token (CPU
only) and hands the route the session; write routes then change the cart with one script call
that returns the new cart, so no route reads the cart before writing it.

`get_stores` and `current_session` also have scope readers (`reads_scope`), which `Endpoints`
use instead of solving them while no dependency is overridden; tests/cartlib/web/test_readers.py
holds each reader to what its dependency gives.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.openapi.models import HTTPBearer
from fastapi.security import APIKeyHeader
from fastapi.security.base import SecurityBase
from starlette.requests import HTTPConnection
from starlette.types import Scope

from cartlib.store import Session, Stores, Unauthorized, check_admin_token
from cartlib.web.endpoints import reads_scope
from cartlib.web.responses import cart_json


class BearerToken(SecurityBase):
    """The token of an `Authorization: Bearer <token>` header, or None (then the route answers
    our 401 with WWW-Authenticate, not FastAPI's). Documented in OpenAPI as FastAPI's
    `HTTPBearer` is; read straight from the scope, without the credentials model that
    `HTTPBearer` builds per request (bench/README.md)."""

    def __init__(self, *, description: str) -> None:
        self.model = HTTPBearer(description=description)
        self.scheme_name = "HTTPBearer"

    async def __call__(self, request: HTTPConnection) -> str | None:
        return self.read(request.scope)

    @staticmethod
    def read(scope: Scope) -> str | None:
        for name, value in scope["headers"]:
            if name == b"authorization":  # the first one, as `Headers.get` reads it
                scheme, _, token = value.decode("latin-1").partition(" ")
                token = token.strip()
                return token if token and scheme.lower() == "bearer" else None
        return None


_bearer = BearerToken(description="A session token from `POST /sessions`.")


def _stores_of(scope: Scope) -> Stores:
    stores: Stores = scope["app"].state.stores
    return stores


@reads_scope(_stores_of)
async def get_stores(request: Request) -> Stores:
    return _stores_of(request.scope)


StoresDep = Annotated[Stores, Depends(get_stores)]


def _session_of(scope: Scope) -> Session:
    token = BearerToken.read(scope)
    if token is None:
        raise Unauthorized("Missing bearer token")
    stores: Stores = scope["app"].state.stores
    return stores.tokens.verify(token)


@reads_scope(_session_of)
async def current_session(
    stores: StoresDep,
    token: Annotated[str | None, Depends(_bearer)],
) -> Session:
    if token is None:
        raise Unauthorized("Missing bearer token")
    return stores.tokens.verify(token)


SessionDep = Annotated[Session, Depends(current_session)]


async def current_cart(stores: StoresDep, session: SessionDep) -> bytes:
    """The session's cart as JSON (`{"session_id", "items"}`): one round trip."""
    return cart_json(session.id, await stores.carts.get(session.id))


CartDep = Annotated[bytes, Depends(current_cart)]


# A security scheme rather than a Header parameter: read from the request by a dependency of
# its own, it is checked before the body is read (cartlib.web.endpoints).
_admin_token = APIKeyHeader(name="X-Admin-Token", auto_error=False, description="The ADMIN_TOKEN.")


async def require_admin(
    stores: StoresDep, x_admin_token: Annotated[str | None, Depends(_admin_token)]
) -> None:
    expected = stores.settings.admin_token
    check_admin_token(x_admin_token, expected.get_secret_value() if expected else None)
