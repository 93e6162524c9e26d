"""The body of an `Endpoints` route: one in which each of the model's key names appears once
at most is parsed and validated by pydantic (`validate_json`); any other, or one pydantic
refuses, by `json` with the duplicate-key hook, as FastAPI would. Both ways agree: whatever
the fast way accepts, the other accepts as the same value, and a key twice is refused
whichever way a body would have gone."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from cartlib.web.endpoints import _JSON, DuplicateKey, _each_key_once, _json_keys
from cartlib.web.models import AddToCart, CheckoutRequest, ItemIn, SetQuantity

MODELS: list[Any] = [AddToCart, SetQuantity, ItemIn, CheckoutRequest]


def slow(adapter: TypeAdapter[Any], raw: bytes) -> Any:
    """What a body gives without the fast way: `json` with the hook, then `validate_python`."""
    return adapter.validate_python(
        _JSON.decode(raw.decode(json.detect_encoding(raw), "surrogatepass")), from_attributes=True
    )


def fast(model: Any, raw: bytes) -> Any:
    """What the fast way gives, or None when it does not apply (the slow way answers)."""
    keys = _json_keys(model)
    assert keys is not None  # every request model lists its keys
    if not _each_key_once(raw, keys):
        return None
    try:
        return TypeAdapter(model).validate_json(raw)
    except ValidationError:
        return None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=8,
)
keys = st.sampled_from(["item", "id", "quantity", "name", "price_cents", "stock", "payment"])
item_ids = st.sampled_from(["mug", "badger-mug", "x" * 64, "", "a b", "é", 1, None])
bodies = st.fixed_dictionaries(
    {},
    optional={
        "item": st.fixed_dictionaries({}, optional={"id": item_ids}) | json_values,
        "quantity": st.integers(-2, 3) | json_values,
        "name": st.text(max_size=5) | json_values,
        "price_cents": st.integers(-1, 10) | json_values,
        "stock": st.integers(-1, 10) | json_values,
        "payment": st.fixed_dictionaries({}, optional={"token": st.text(max_size=5)}),
    },
)


ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,10}", fullmatch=True) | item_ids
tokens = st.text(alphabet="ab_-1 ", max_size=4)
# Bodies each model mostly accepts (the fast way's ground), and anything else.
valid_bodies: dict[Any, st.SearchStrategy[dict[str, Any]]] = {
    AddToCart: st.fixed_dictionaries(
        {"item": st.fixed_dictionaries({"id": ids})}, optional={"quantity": st.integers()}
    ),
    SetQuantity: st.fixed_dictionaries({"quantity": st.integers() | st.floats(-2, 2)}),
    ItemIn: st.fixed_dictionaries(
        {"name": st.text(max_size=6), "price_cents": st.integers(-1, 10**9), "stock": st.integers()}
    ),
    CheckoutRequest: st.fixed_dictionaries({"payment": st.fixed_dictionaries({"token": tokens})}),
}


def texts(body: dict[str, Any], repeat: str | None, spaces: bool) -> bytes:
    """`body` as JSON, with its first key repeated (its value changed) when `repeat` says."""
    separators = (", ", ": ") if spaces else (",", ":")
    text = json.dumps(body, separators=separators, ensure_ascii=False)
    if repeat is not None and body:
        first = next(iter(body))
        text = text[:-1] + ("," if len(body) else "") + f'"{first}": {json.dumps(repeat)}' + "}"
    return text.encode()


@settings(max_examples=600, deadline=None)
@given(
    data=st.data(),
    model=st.sampled_from(MODELS),
    repeat=st.none() | st.none() | st.text(max_size=3),
    spaces=st.booleans(),
)
def test_the_fast_way_agrees_with_json_and_refuses_no_less(
    data: st.DataObject, model: Any, repeat: str | None, spaces: bool
) -> None:
    body = data.draw(valid_bodies[model] | bodies)
    raw = texts(body, repeat, spaces)
    got = fast(model, raw)
    if got is None:
        return  # answered the slow way, as before
    assert got == slow(TypeAdapter(model), raw)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"item": {"id": "mug"}, "item": {"id": "mug"}}',
        b'{"item": {"id": "mug"}, "quantity": 1, "quantity": 1}',
        b'{"item": {"id": "mug", "id": "mug"}}',
        b'{"item": {"id": "mug"}, "\\u0071uantity": 1, "quantity": 1}',
        b'{"item": {"id": "mug"},"quantity":1 ,  "quantity"  :  1}',
    ],
)
def test_a_key_twice_is_never_taken_the_fast_way(raw: bytes) -> None:
    assert fast(AddToCart, raw) is None
    with pytest.raises(DuplicateKey):
        slow(TypeAdapter(AddToCart), raw)


def test_the_key_names_of_each_model() -> None:
    assert _json_keys(AddToCart) == (b'"id"', b'"item"', b'"quantity"')
    assert _json_keys(CheckoutRequest) == (b'"payment"', b'"token"')

    class Open(BaseModel):
        anything: int

    class WithMapping(BaseModel):
        model_config = ConfigDict(extra="forbid")
        labels: dict[str, int]

    # Keys no listing covers: never the fast way.
    assert _json_keys(Open) is None
    assert _json_keys(WithMapping) is None


@pytest.mark.parametrize(
    ("raw", "once"),
    [
        (b'{"item": {"id": "mug"}, "quantity": 2}', True),
        (b'{"item": {"id": "quantity"}, "quantity": 2}', False),  # a value like a key: not proven
        (b'{"item": {"id": "mug"}, "\\u0071uantity": 1}', False),  # an escape
        (b'{"item": {"id": "mug"}, "item": {"id": "mug"}}', False),
    ],
)
def test_each_key_once(raw: bytes, once: bool) -> None:
    assert _each_key_once(raw, (b'"id"', b'"item"', b'"quantity"')) is once
