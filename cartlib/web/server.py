"""`run()`: how a service process starts (`python -m inventory`)."""

from __future__ import annotations

import uvicorn

from cartlib.settings import get_settings
from cartlib.web import metrics
from cartlib.web.http_limits import LimitedHttpProtocol
from cartlib.web.logs import logging_config


def run(app_factory: str, *, default_port: int) -> None:
    """Serve `app_factory` ("package.module:function") with uvicorn, uvloop and httptools,
    behind the limits of `LimitedHttpProtocol` (header size, read timeout, connections).

    On SIGTERM uvicorn stops accepting connections and lets in-flight requests finish, for up
    to `timeout_graceful_shutdown` seconds, which fits Kubernetes' default 30 s grace period.
    """
    settings = get_settings()
    metrics.use_multiprocess_dir(
        settings.prometheus_multiproc_dir, workers=settings.web_concurrency
    )
    uvicorn.run(
        app_factory,
        factory=True,
        host=settings.host,
        port=settings.port or default_port,
        workers=settings.web_concurrency,
        loop="uvloop",
        http=LimitedHttpProtocol,
        timeout_keep_alive=settings.http_keep_alive_timeout_seconds,
        log_config=logging_config(settings.log_level),
        access_log=False,
        server_header=False,
        # No client address is used, so uvicorn need not parse X-Forwarded-For on each request.
        proxy_headers=False,
        timeout_graceful_shutdown=20,
    )
