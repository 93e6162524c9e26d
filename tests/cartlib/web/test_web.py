"""`create_app()`'s lifespan, beyond what the service tests see over HTTP."""

from __future__ import annotations

import gc
from typing import Annotated

import pytest
from fastapi import Path

from cartlib.web.app import GC_THRESHOLDS, create_app
from cartlib.web.endpoints import Endpoints
from cartlib.web.responses import JSONBytes
from tests.cartlib.conftest import make_settings


async def test_startup_moves_long_lived_objects_out_of_the_collectors_reach(
    redis_url: str,
) -> None:
    app = create_app(title="test", routers=[], settings=make_settings(redis_url))
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        # The app, its routes and schemas are frozen: full collections no longer walk them.
        assert gc.get_freeze_count() > 10_000
        # Young collections rarely enough that a request's objects die before one.
        assert gc.get_threshold() == GC_THRESHOLDS
    gc.unfreeze()
    assert gc.get_threshold() != GC_THRESHOLDS  # the process's own, given back


def test_the_routers_routes_join_the_application_route_table(redis_url: str) -> None:
    things = Endpoints(prefix="/things", tags=["things"])

    @things.get("/{thing_id}")
    async def read_thing(thing_id: Annotated[str, Path()]) -> JSONBytes:
        return JSONBytes(f'"{thing_id}"'.encode())

    app = create_app(title="test", routers=[things], settings=make_settings(redis_url))
    # Not nested behind an included-router route that matches each request twice, and tried
    # before the operations routes and the docs pages.
    assert app.router.routes[0] is things.routes[0]
    assert "/things/{thing_id}" in app.openapi()["paths"]


@pytest.mark.parametrize(
    ("sent", "kept"),
    [(b"req-42", True), (b"req-42\n", False), (b"req 42", False), (b"r" * 129, False)],
    ids=["valid", "trailing newline", "space", "too long"],
)
def test_a_request_id_is_kept_only_when_it_is_valid_as_a_whole(sent: bytes, kept: bool) -> None:
    from cartlib.web.middleware import _request_id

    request_id = _request_id({"headers": [(b"x-request-id", sent)]})
    assert (request_id == sent.decode()) is kept
