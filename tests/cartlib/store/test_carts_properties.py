"""Property tests of `CartStore` against a real Redis: any sequence of adds, sets and
removes leaves the cart a plain Python model of the rules would leave, and refuses exactly
what the model refuses, with the same error.

The model is the specification, written without Redis: a line holds 1 to
`max_quantity` units and no more than the item's stock, a cart holds at most `max_lines`
lines, an unknown item cannot be added, a refused change changes nothing. The cart is
compared through `CartStore.get()` (the lines as the API shows them), never through the
values the writes return or the hash's layout.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

import orjson
import pytest
from hypothesis import HealthCheck, event, given, settings, target
from hypothesis import strategies as st

from cartlib.store.errors import (
    CartError,
    InsufficientStock,
    ItemNotFound,
    QuantityLimitExceeded,
    TooManyLines,
)
from cartlib.store.stores import Stores
from tests.cartlib.conftest import StockItem

# More items than a cart may hold lines (the fixture's cart_max_lines is 5), with stocks
# below, at and above the line cap (99), and ids of every allowed character class.
STOCK = {"mug": 3, "cap": 1000, "pen": 150, "hat": 1, "bag.2": 40, "Cup_99": 99, "box-7": 7}
UNKNOWN_IDS = ("ghost", "MUG", "mug ")
ITEM_IDS = st.sampled_from([*STOCK, *UNKNOWN_IDS])
# Small quantities often (carts fill up, stocks run short), the limits (0, 1, the cap, past
# it) and far outside them, negative included.
QUANTITIES = st.one_of(
    st.integers(min_value=1, max_value=4),
    st.integers(min_value=-3, max_value=110),
    st.sampled_from([0, 98, 99, 100, 2**31, 2**63, -(2**63), 10**30]),
)
Operation = tuple[str, str, int]
ADD = st.tuples(st.just("add"), ITEM_IDS, QUANTITIES)
# Adds twice as often as the others, so that carts reach their line limit.
OPERATIONS = st.one_of(
    ADD,
    ADD,
    st.tuples(st.just("set"), ITEM_IDS, QUANTITIES),
    st.tuples(st.just("remove"), ITEM_IDS, st.just(0)),
)


@dataclass
class CartModel:
    """The cart rules in plain Python; each change returns the error it must raise."""

    stock: dict[str, int]
    max_quantity: int
    max_lines: int
    lines: dict[str, int] = field(default_factory=dict)

    def apply(self, operation: Operation) -> type[CartError] | None:
        kind, item_id, quantity = operation
        if kind == "add":
            return self.add(item_id, quantity)
        if kind == "set":
            return self.set(item_id, quantity)
        return self.set(item_id, 0)

    def add(self, item_id: str, quantity: int) -> type[CartError] | None:
        if not 1 <= quantity <= self.max_quantity:
            return QuantityLimitExceeded
        if item_id not in self.stock:
            return ItemNotFound
        wanted = self.lines.get(item_id, 0) + quantity
        if wanted > self.max_quantity:
            return QuantityLimitExceeded
        if wanted > self.stock[item_id]:
            return InsufficientStock
        if item_id not in self.lines and len(self.lines) >= self.max_lines:
            return TooManyLines
        self.lines[item_id] = wanted
        return None

    def set(self, item_id: str, quantity: int) -> type[CartError] | None:
        if not 0 <= quantity <= self.max_quantity:
            return QuantityLimitExceeded
        if quantity == 0:  # removing needs no catalog entry, and is never an error
            self.lines.pop(item_id, None)
            return None
        if item_id not in self.stock:
            return ItemNotFound
        if quantity > self.stock[item_id]:
            return InsufficientStock
        if item_id not in self.lines and len(self.lines) >= self.max_lines:
            return TooManyLines
        self.lines[item_id] = quantity
        return None

    def shown(self) -> list[dict[str, object]]:
        """The lines as `CartStore.get()` shows them: sorted by id."""
        return [{"id": item_id, "quantity": self.lines[item_id]} for item_id in sorted(self.lines)]


async def change(stores: Stores, session_id: str, operation: Operation) -> None:
    kind, item_id, quantity = operation
    if kind == "add":
        await stores.carts.add(session_id, item_id, quantity)
    elif kind == "set":
        await stores.carts.set(session_id, item_id, quantity)
    else:
        await stores.carts.remove(session_id, item_id)


@pytest.fixture
async def catalog(stock_item: StockItem) -> dict[str, int]:
    for item_id, units in STOCK.items():
        await stock_item(item_id, stock=units)
    return STOCK


# The stores and catalog fixtures are shared by the examples on purpose: each example uses
# a session of its own, so no example sees another's cart. Redis round trips vary in time,
# hence no deadline.
@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=50))
async def test_any_sequence_of_changes_gives_the_models_cart(
    stores: Stores, catalog: dict[str, int], operations: list[Operation]
) -> None:
    session_id = f"property-{uuid.uuid4().hex}"
    max_quantity = stores.carts.max_quantity
    max_lines = stores.settings.cart_max_lines
    model = CartModel(dict(catalog), max_quantity=max_quantity, max_lines=max_lines)
    for step, operation in enumerate(operations):
        expected_error = model.apply(operation)
        event(f"{operation[0]}: {expected_error.__name__ if expected_error else 'ok'}")
        raised: CartError | None = None
        try:
            await change(stores, session_id, operation)
        except CartError as error:
            raised = error
        raised_type = None if raised is None else type(raised)
        assert raised_type is expected_error, (step, operation, raised)
        shown = orjson.loads(await stores.carts.get(session_id))
        assert shown == model.shown(), (step, operation)
        # The invariants, also checked directly (the model could share a mistake).
        assert len(shown) <= max_lines
        assert all(1 <= line["quantity"] <= max_quantity for line in shown)
        assert all(line["quantity"] <= catalog[line["id"]] for line in shown)
    # Steer the search towards full carts, where the line limit is tested.
    target(len(model.lines), label="lines in the cart")
