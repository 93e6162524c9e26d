"""cartlib: the shared Redis cart layer of the storefront services.

The only code that talks to Redis. Services build on `create_app()` and the stores it
places on `app.state.stores`.
"""

from cartlib.auth import IssuedToken, Session, SessionTokens
from cartlib.cache import Cache
from cartlib.carts import CartStore, LineChange, cart_json, line_change_json
from cartlib.catalog import Catalog
from cartlib.deps import CartDep, SessionDep, StoresDep, get_stores, require_admin
from cartlib.endpoints import Endpoints
from cartlib.keys import Keys
from cartlib.orders import (
    CheckoutResponse,
    OrderStore,
    PaymentProcessor,
    PaymentResult,
    PaymentUnavailable,
)
from cartlib.redis import create_redis
from cartlib.responses import JSONBytes
from cartlib.settings import Settings, get_settings
from cartlib.stores import Stores
from cartlib.web import create_app

__all__ = [
    "Cache",
    "CartDep",
    "CartStore",
    "Catalog",
    "CheckoutResponse",
    "Endpoints",
    "IssuedToken",
    "JSONBytes",
    "Keys",
    "LineChange",
    "OrderStore",
    "PaymentProcessor",
    "PaymentResult",
    "PaymentUnavailable",
    "Session",
    "SessionDep",
    "SessionTokens",
    "Settings",
    "Stores",
    "StoresDep",
    "cart_json",
    "create_app",
    "create_redis",
    "get_settings",
    "get_stores",
    "line_change_json",
    "require_admin",
]
