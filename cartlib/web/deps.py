"""FastAPI dependencies, declared once as `Annotated` aliases for the routes to use.

`SessionDep` is the article's cart middleware done right: it verifies the bearer token (CPU
only) and hands the route the session; write routes then change the cart with one script call
that returns the new cart, so no route reads the cart before writing it.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from cartlib.store import Session, Stores, Unauthorized, check_admin_token
from cartlib.web.responses import cart_json

# auto_error=False: a missing header must give our 401 with WWW-Authenticate, not FastAPI's.
_bearer = HTTPBearer(auto_error=False, description="A session token from `POST /sessions`.")


async def get_stores(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


StoresDep = Annotated[Stores, Depends(get_stores)]


async def current_session(
    stores: StoresDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Session:
    if credentials is None:
        raise Unauthorized("Missing bearer token")
    return stores.tokens.verify(credentials.credentials)


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
