"""inventory: guest sessions, the catalog, and every change to a cart."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Path

from cartlib.settings import Settings
from cartlib.store import (
    Forbidden,
    InsufficientStock,
    ItemNotFound,
    LimitExceeded,
    LineChange,
    Stores,
    StoreUnavailable,
)
from cartlib.web import (
    BODY_ERRORS,
    SESSION_ERRORS,
    AddToCart,
    CartLineChange,
    Endpoints,
    Item,
    ItemId,
    ItemIn,
    ItemList,
    JSONBytes,
    LegacyAddToCart,
    LegacyCart,
    NewSession,
    SessionDep,
    SetQuantity,
    StoresDep,
    cart_router,
    error_responses,
    line_change_json,
    require_admin,
)
from cartlib.web import create_app as create_service
from inventory.seed import seed_catalog

ItemIdPath = Annotated[ItemId, Path(description="An item id, e.g. `badger-mug`.")]

sessions = Endpoints(prefix="/sessions", tags=["sessions"])


@sessions.post("", status_code=201, response_model=NewSession, response_class=JSONBytes)
async def create_session(stores: StoresDep) -> JSONBytes:
    """Start a guest session; its token authorises the cart calls of both services."""
    issued = stores.tokens.mint()
    session = NewSession(
        token=issued.token, session_id=issued.session.id, expires_at=issued.session.expires_at
    )
    return JSONBytes(session.model_dump_json().encode(), 201)


items = Endpoints(
    prefix="/items",
    tags=["items"],
    responses=error_responses(StoreUnavailable),
)


@items.get("", response_model=ItemList, response_class=JSONBytes)
async def list_items(stores: StoresDep) -> JSONBytes:
    """Every item; stock may be a few seconds stale (cached)."""
    return JSONBytes(await stores.catalog.list_json())


@items.get(
    "/{item_id}",
    response_model=Item,
    response_class=JSONBytes,
    responses=error_responses(ItemNotFound),
)
async def read_item(stores: StoresDep, item_id: ItemIdPath) -> JSONBytes:
    """One item, with exact stock."""
    return JSONBytes(await stores.catalog.get_json(item_id))


@items.put(
    "/{item_id}",
    response_model=Item,
    response_class=JSONBytes,
    dependencies=[Depends(require_admin)],
    responses=error_responses(Forbidden, *BODY_ERRORS),
)
async def put_item(stores: StoresDep, item_id: ItemIdPath, item: ItemIn) -> JSONBytes:
    """Create or replace an item and set its units on hand, those held by checkouts being
    paid included; the answer's stock is what can be bought (admin: `X-Admin-Token`)."""
    return JSONBytes(await stores.catalog.put(item_id, item))


cart_items = Endpoints(
    prefix="/cart/items",
    tags=["cart"],
    responses=error_responses(*SESSION_ERRORS, ItemNotFound, InsufficientStock, LimitExceeded),
)


def _changed(session_id: str, change: LineChange, status_code: int = 200) -> JSONBytes:
    return JSONBytes(line_change_json(session_id, change), status_code)


@cart_items.post(
    "",
    status_code=201,
    response_model=CartLineChange,
    response_class=JSONBytes,
    responses=error_responses(*BODY_ERRORS),
)
async def add_to_cart(stores: StoresDep, session: SessionDep, body: AddToCart) -> JSONBytes:
    """Add units of an item to the cart (atomic, one Redis round trip); answers with the line."""
    change = await stores.carts.add(session.id, body.item.id, body.quantity)
    return _changed(session.id, change, 201)


@cart_items.put(
    "/{item_id}",
    response_model=CartLineChange,
    response_class=JSONBytes,
    responses=error_responses(*BODY_ERRORS),
)
async def set_quantity(
    stores: StoresDep, session: SessionDep, item_id: ItemIdPath, body: SetQuantity
) -> JSONBytes:
    """Set a line's quantity; 0 removes the line."""
    return _changed(session.id, await stores.carts.set(session.id, item_id, body.quantity))


@cart_items.delete("/{item_id}", response_model=CartLineChange, response_class=JSONBytes)
async def remove_from_cart(
    stores: StoresDep, session: SessionDep, item_id: ItemIdPath
) -> JSONBytes:
    """Remove a line (removing an absent line is not an error)."""
    return _changed(session.id, await stores.carts.remove(session.id, item_id))


legacy = Endpoints(
    prefix="/Cart",
    tags=["legacy"],
    # LimitExceeded: a line at the cap or a cart at CART_MAX_LINES refuses one unit more.
    responses=error_responses(
        *SESSION_ERRORS, *BODY_ERRORS, ItemNotFound, InsufficientStock, LimitExceeded
    ),
)


@legacy.post("/Item", status_code=201, response_model=LegacyCart, response_class=JSONBytes)
async def legacy_add_to_cart(
    stores: StoresDep, session: SessionDep, body: LegacyAddToCart
) -> JSONBytes:
    """The original article's route: add one unit; answers with the cart's lines."""
    # The article's answer is the whole cart, so this route costs what the article's did:
    # a second round trip and time that grows with the cart. `POST /cart/items` does not.
    await stores.carts.add(session.id, body.item.id)
    lines = await stores.carts.get(session.id)
    return JSONBytes(b'{"message":"OK","cart":' + lines + b"}", 201)


def create_app(*, settings: Settings | None = None, stores: Stores | None = None) -> FastAPI:
    """The inventory service; `settings` and `stores` go to `cartlib.web.create_app`."""
    return create_service(
        title="inventory",
        # Busiest first: requests are matched against routes in this order.
        routers=[cart_items, cart_router, items, sessions, legacy],
        on_startup=[seed_catalog],
        settings=settings,
        stores=stores,
    )
