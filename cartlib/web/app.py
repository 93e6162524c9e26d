"""`create_app()`: the FastAPI application every storefront service is built from.

It owns what all services share: the stores (`cartlib.store.Stores`) for the process's
lifetime, health and readiness, `/metrics`, the JSON error responses (`cartlib.web.errors`),
request ids, JSON logs and the body size limit. A service adds only its routers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Final

from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from cartlib.settings import Settings, get_settings
from cartlib.store import Stores, StoreUnavailable
from cartlib.store import metrics as store_metrics
from cartlib.web import metrics
from cartlib.web.endpoints import Endpoints, ServedFirst
from cartlib.web.errors import add_error_handlers, error_responses
from cartlib.web.middleware import ServiceMiddleware

logger = logging.getLogger("storefront")

StartupHook = Callable[[Stores], Awaitable[None]]
BackgroundTask = Callable[[Stores], Coroutine[Any, Any, None]]


def package_version() -> str:
    try:
        return version("storefront")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


STARTUP_RETRY_SECONDS = 1.0


async def _retry_startup_hook(hook: StartupHook, stores: Stores) -> None:
    """Run a startup hook that met Redis down again every STARTUP_RETRY_SECONDS until it
    succeeds (cancelled with the app's other tasks at shutdown)."""
    while True:
        await asyncio.sleep(STARTUP_RETRY_SECONDS)
        try:
            await hook(stores)
        except StoreUnavailable:
            continue
        logger.info("startup hook %s done: Redis answers", hook.__name__)
        return


# The cyclic GC's thresholds while a service runs (gen0 allocations, gen1 and gen2 collections).
GC_THRESHOLDS: Final = (10_000, 20, 20)


def create_app(
    *,
    title: str,
    routers: Sequence[Endpoints | APIRouter],
    on_startup: Sequence[StartupHook] = (),
    background: Sequence[BackgroundTask] = (),
    settings: Settings | None = None,
    stores: Stores | None = None,
) -> FastAPI:
    """A service: shared plumbing plus `routers`.

    `routers` are matched in the order given: list the busiest first. `Endpoints` are served
    as plain routes; an `APIRouter` is included as FastAPI includes it.
    `on_startup` hooks run once Redis is set up; `background` tasks run for the app's lifetime
    and are cancelled at shutdown.

    `settings` defaults to the environment's (tests pass their own). `stores` replaces the
    ones built from the settings (the caller then owns them and closes them).
    """
    app_version = package_version()
    settings = settings or get_settings()
    given_stores = stores

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stores = given_stores or Stores.from_settings(settings)
        app.state.stores = stores
        metrics.BUILD_INFO.labels(title, app_version).set(1)
        tasks = []
        for hook in on_startup:
            try:
                await hook(stores)
            except StoreUnavailable:
                # Start anyway (/readyz reports Redis) and run the hook once Redis answers: in
                # a cluster the services usually start before Redis does.
                logger.warning("startup hook %s deferred: Redis unavailable", hook.__name__)
                tasks.append(asyncio.create_task(_retry_startup_hook(hook, stores)))
        tasks += [asyncio.create_task(task(stores), name=task.__name__) for task in background]
        if metrics.MULTIPROCESS:
            tasks.append(asyncio.create_task(store_metrics.keep_pool_gauges_fresh()))
        # What exists now (modules, routes, schemas, the stores) lives as long as the process:
        # move it where the cyclic GC never scans it again: its full collections paused every
        # request in flight (bench/README.md has the measurement).
        gc.freeze()
        # A young collection after 10,000 new objects rather than 700: with 700 it ran while
        # requests were in flight and promoted their objects to the old generations, whose
        # collections then ran more than once a second, each scanning everything made since
        # startup (the session-token cache among it) (bench/README.md).
        thresholds = gc.get_threshold()
        gc.set_threshold(*GC_THRESHOLDS)
        try:
            yield
        finally:
            gc.set_threshold(*thresholds)
            for running in tasks:
                running.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if given_stores is None:
                await stores.aclose()
            metrics.forget_this_process()

    app = _Service(
        max_body_bytes=settings.max_body_bytes,
        title=title,
        version=app_version,
        lifespan=lifespan,
        # Metrics go to Prometheus (cartlib.web.metrics). FastAPI's own OpenTelemetry layer,
        # left on, looks up the global tracer provider in os.environ on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    add_error_handlers(app)
    # Routes are tried one by one, each miss costing a regex match: the services' routers
    # (which `routers` lists busiest first) come before the probes, the scrapes and the docs
    # pages FastAPI added first.
    builtin = list(app.router.routes)
    app.router.routes.clear()
    documented: list[BaseRoute] = []
    for router in (*routers, _operations):
        if isinstance(router, Endpoints):
            if len(app.router.routes) == len(app.served_first):
                app.served_first += router.routes
            app.router.routes.extend(router.routes)
            documented += router.docs.routes
        else:
            app.include_router(router)
            documented += router.routes
    app.router.routes.extend(builtin)

    def openapi() -> dict[str, Any]:
        # The documented hook for a schema of one's own: the Endpoints' routes are documented
        # by their APIRouter, not by the plain routes that serve them.
        if app.openapi_schema is None:
            app.openapi_schema = get_openapi(
                title=app.title, version=app.version, routes=documented
            )
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


class _Service(FastAPI):
    """FastAPI with `ServiceMiddleware` outermost, and the `Endpoints`' routes that lead the
    table (`served_first`) served from just below it (`ServedFirst`)."""

    def __init__(self, *, max_body_bytes: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_body_bytes = max_body_bytes
        self.served_first: list[Route] = []

    def build_middleware_stack(self) -> ASGIApp:
        stack = ServedFirst(self.served_first, fallback=super().build_middleware_stack())
        return ServiceMiddleware(stack, max_bytes=self.max_body_bytes)


_operations = APIRouter(tags=["operations"])


@_operations.get("/healthz", summary="Liveness: the process answers (Redis is not consulted)")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@_operations.get(
    "/readyz",
    summary="Readiness: Redis answers",
    responses=error_responses(StoreUnavailable),
)
async def readyz(request: Request) -> dict[str, str]:
    stores: Stores = request.app.state.stores
    await stores.ping()
    return {"status": "ok"}


@_operations.get("/metrics", include_in_schema=False)
async def prometheus_metrics() -> Response:
    return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)
