"""schemathesis against both services' OpenAPI schemas, as served over HTTP, with a real
Redis behind them: whatever a client sends, within the schema or not, the answer is never a
5xx, and its status code, content type and body are the ones the schema documents.

Each operation is fuzzed on its own, with valid data (`positive`) and with data that breaks
the schema (`negative`). Every example gets a new session whose cart holds one unit of a
stocked item, so cart and checkout calls get past authentication and reach Redis; admin
calls carry the admin token.

schemathesis's pytest loader for fixtures (`schemathesis.pytest.from_fixture`) needs a
private attribute pytest 9.2 no longer has (`Node._nodeid`), and the schema only exists once
the `stack` fixture runs, so each test draws cases from the operation's own Hypothesis
strategy (`APIOperation.as_strategy`) and validates them with `case.call_and_validate`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests._redis import flush
from tests.services._stack import Stack

# Every operation of each schema; test_every_operation_is_fuzzed keeps the lists complete.
OPERATIONS: dict[str, list[str]] = {
    "inventory": [
        "GET /healthz",
        "GET /readyz",
        "POST /sessions",
        "GET /items",
        "GET /items/{item_id}",
        "PUT /items/{item_id}",
        "GET /cart",
        "POST /cart/items",
        "PUT /cart/items/{item_id}",
        "DELETE /cart/items/{item_id}",
        "POST /Cart/Item",
    ],
    "checkout": [
        "GET /healthz",
        "GET /readyz",
        "GET /cart",
        "POST /checkout",
        "PATCH /Cart/checkout",
        "GET /orders/{order_id}",
    ],
}
# Operations that take no parameters and no body: nothing to break, so only valid requests.
WITHOUT_INPUT = frozenset(
    {"GET /healthz", "GET /readyz", "POST /sessions", "GET /items", "GET /cart"}
)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
# Short ids Hypothesis tends to try first for an item id, stocked so that valid requests
# find an item now and then; "0" is the one in every example's cart.
STOCKED_IDS = ("0", "A", "a", "00")
EXAMPLES_PER_OPERATION = 50

Schemas = dict[str, schemathesis.BaseSchema]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def schemas(stack: Stack, http: httpx.Client) -> Schemas:
    """Each service's schema as it serves it, over an emptied Redis with a few items."""
    flush(stack.redis_url)
    for item_id in STOCKED_IDS:
        put_stocked_item(stack, http, item_id)
    return {
        service.name: schemathesis.openapi.from_url(f"{service.url}/openapi.json")
        for service in (stack.inventory, stack.checkout)
    }


def put_stocked_item(stack: Stack, http: httpx.Client, item_id: str) -> None:
    response = http.put(
        f"{stack.inventory.url}/items/{item_id}",
        json={"name": f"Item {item_id}", "price_cents": 100, "stock": 1_000_000_000},
        headers={"X-Admin-Token": stack.admin_token},
    )
    assert response.status_code == 200, response.text


def shopper_headers(stack: Stack, http: httpx.Client) -> dict[str, str]:
    """The credentials of a new session with one unit of item "0" in its cart."""
    # Fuzzing PUT /items/{item_id} may have changed item "0" (its stock to 0, say).
    put_stocked_item(stack, http, STOCKED_IDS[0])
    response = http.post(f"{stack.inventory.url}/sessions")
    assert response.status_code == 201, response.text
    authorization = f"Bearer {response.json()['token']}"
    response = http.post(
        f"{stack.inventory.url}/cart/items",
        json={"item": {"id": STOCKED_IDS[0]}},
        headers={"Authorization": authorization},
    )
    assert response.status_code == 201, response.text
    return {"Authorization": authorization, "X-Admin-Token": stack.admin_token}


def test_every_operation_is_fuzzed(schemas: Schemas) -> None:
    for service, schema in schemas.items():
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result.err()
            operations.append(result.ok())
        assert sorted(op.label for op in operations) == sorted(OPERATIONS[service]), service
        for operation in operations:
            takes_input = bool(operation.definition.raw.keys() & {"parameters", "requestBody"})
            assert takes_input is (operation.label not in WITHOUT_INPUT), operation.label


def test_routes_with_a_body_document_what_the_body_checks_answer(schemas: Schemas) -> None:
    """Fuzzing never sends a body over MAX_BODY_BYTES or of another media type, so these
    answers (test_bad_input.py makes them) are checked against the schema here."""
    for schema in schemas.values():
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result.err()
            definition = result.ok().definition.raw
            if "requestBody" in definition:
                documented = set(definition["responses"])
                assert {"400", "413", "415", "422"} <= documented, result.ok().label


FUZZED = [
    pytest.param(service, label, mode, id=f"{service} {label} {mode}")
    for service, labels in OPERATIONS.items()
    for label in labels
    for mode in GenerationMode
    if mode is GenerationMode.POSITIVE or label not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("service", "label", "mode"), FUZZED)
def test_answers_match_the_schema(
    schemas: Schemas,
    stack: Stack,
    http: httpx.Client,
    service: str,
    label: str,
    mode: GenerationMode,
) -> None:
    operation = schemas[service].find_operation_by_label(label)
    assert operation is not None, label
    base_url = getattr(stack, service).url

    # Round trips to Redis vary in time, so no deadline; the health checks about slow or
    # filtered generation are about Hypothesis's speed, not the service's answers.
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(mode), data=st.data())
    def fuzz(case: schemathesis.Case[Any], data: Any) -> None:
        # Mostly a valid session (and the admin token), to get past authentication; else
        # only what was generated, which carries no session token.
        credentials = data.draw(st.integers(0, 3), label="credentials") > 0
        headers = shopper_headers(stack, http) if credentials else None
        case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS)

    fuzz()
