"""`create_app()`'s lifespan, beyond what the service tests see over HTTP."""

from __future__ import annotations

import gc

from cartlib.web import create_app
from tests.cartlib.conftest import make_settings


async def test_startup_moves_long_lived_objects_out_of_the_collectors_reach(
    redis_url: str,
) -> None:
    app = create_app(title="test", routers=[], settings=make_settings(redis_url))
    gc.unfreeze()
    async with app.router.lifespan_context(app):
        # The app, its routes and schemas are frozen: full collections no longer walk them.
        assert gc.get_freeze_count() > 10_000
    gc.unfreeze()
