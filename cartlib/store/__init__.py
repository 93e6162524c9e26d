"""cartlib.store: the Redis layer. Every Redis access of the services goes through it.

`Stores.from_settings()` builds everything a service needs from `cartlib.settings.Settings`.
Nothing here knows HTTP: failures are the domain errors of `cartlib.store.errors`, which
`cartlib.web.errors` turns into answers.
"""

from cartlib.store.auth import IssuedToken, Session, SessionTokens, check_admin_token
from cartlib.store.cache import Cache
from cartlib.store.carts import CartStore, LineChange
from cartlib.store.catalog import Catalog, ItemSpec
from cartlib.store.checkout_flow import (
    CheckoutFlow,
    CheckoutOutcome,
    CheckoutRequest,
    Declined,
    Paid,
    Replayed,
    Short,
    SoldOut,
)
from cartlib.store.errors import (
    BadRequest,
    CartError,
    CheckoutExpired,
    CheckoutInProgress,
    Conflict,
    EmptyCart,
    Forbidden,
    IdempotencyKeyReused,
    InsufficientStock,
    InvalidSession,
    ItemNotFound,
    LimitExceeded,
    NotFound,
    NotReplicated,
    OrderNotFound,
    PaymentDeclined,
    QuantityLimitExceeded,
    StoreError,
    StoreUnavailable,
    TooManyDeclines,
    TooManyLines,
    Unauthorized,
)
from cartlib.store.keys import ClusterKeys, Keys
from cartlib.store.orders import (
    FinishedCheckout,
    OrderStore,
    PaymentProcessor,
    PaymentResult,
    PaymentUnavailable,
)
from cartlib.store.redis import call, create_redis
from cartlib.store.stores import Stores

__all__ = [
    "BadRequest",
    "Cache",
    "CartError",
    "CartStore",
    "Catalog",
    "CheckoutExpired",
    "CheckoutFlow",
    "CheckoutInProgress",
    "CheckoutOutcome",
    "CheckoutRequest",
    "ClusterKeys",
    "Conflict",
    "Declined",
    "EmptyCart",
    "FinishedCheckout",
    "Forbidden",
    "IdempotencyKeyReused",
    "InsufficientStock",
    "InvalidSession",
    "IssuedToken",
    "ItemNotFound",
    "ItemSpec",
    "Keys",
    "LimitExceeded",
    "LineChange",
    "NotFound",
    "NotReplicated",
    "OrderNotFound",
    "OrderStore",
    "Paid",
    "PaymentDeclined",
    "PaymentProcessor",
    "PaymentResult",
    "PaymentUnavailable",
    "QuantityLimitExceeded",
    "Replayed",
    "Session",
    "SessionTokens",
    "Short",
    "SoldOut",
    "StoreError",
    "StoreUnavailable",
    "Stores",
    "TooManyDeclines",
    "TooManyLines",
    "Unauthorized",
    "call",
    "check_admin_token",
    "create_redis",
]
