"""cartlib.web: what every storefront service is built from, on FastAPI's public API.

`create_app()` gives a service the stores (`cartlib.store`), health, readiness and
`/metrics`, request ids, JSON logs, limits, and the JSON error answers; the service adds its
routers of `Endpoints`. `run()` serves it. The HTTP status of every domain error is decided
in one place, `cartlib.web.errors`.
"""

from cartlib.web.app import create_app
from cartlib.web.deps import (
    CartDep,
    SessionDep,
    StoresDep,
    current_cart,
    current_session,
    get_stores,
    require_admin,
)
from cartlib.web.endpoints import Endpoints, reads_scope
from cartlib.web.errors import (
    STATUS,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_responses,
    status_of,
)
from cartlib.web.logs import request_id_var
from cartlib.web.models import (
    AddToCart,
    Cart,
    CartLine,
    CartLineChange,
    CheckoutRefusal,
    CheckoutRequest,
    CheckoutResponse,
    ErrorBody,
    Item,
    ItemId,
    ItemIn,
    ItemList,
    ItemRef,
    LegacyAddToCart,
    LegacyCart,
    NewSession,
    Order,
    OrderId,
    OrderLine,
    Payment,
    PaymentToken,
    RequestModel,
    SetQuantity,
    UnprocessableBody,
    ValidationIssue,
)
from cartlib.web.responses import JSONBytes, cart_json, line_change_json
from cartlib.web.routes import BODY_ERRORS, SESSION_ERRORS, cart_router
from cartlib.web.server import run

__all__ = [
    "BODY_ERRORS",
    "SESSION_ERRORS",
    "STATUS",
    "AddToCart",
    "Cart",
    "CartDep",
    "CartLine",
    "CartLineChange",
    "CheckoutRefusal",
    "CheckoutRequest",
    "CheckoutResponse",
    "Endpoints",
    "ErrorBody",
    "Item",
    "ItemId",
    "ItemIn",
    "ItemList",
    "ItemRef",
    "JSONBytes",
    "LegacyAddToCart",
    "LegacyCart",
    "NewSession",
    "Order",
    "OrderId",
    "OrderLine",
    "PayloadTooLarge",
    "Payment",
    "PaymentToken",
    "RequestModel",
    "SessionDep",
    "SetQuantity",
    "StoresDep",
    "UnprocessableBody",
    "UnsupportedMediaType",
    "ValidationIssue",
    "cart_json",
    "cart_router",
    "create_app",
    "current_cart",
    "current_session",
    "error_responses",
    "get_stores",
    "line_change_json",
    "reads_scope",
    "request_id_var",
    "require_admin",
    "run",
    "status_of",
]
