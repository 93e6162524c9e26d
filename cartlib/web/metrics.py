"""The HTTP metrics of a service and `/metrics`, which serves them with the store's.

With one uvicorn worker (the default) every value lives in this process's registry. With
more, `server.run()` first calls `use_multiprocess_dir()`, which points
`PROMETHEUS_MULTIPROC_DIR` at a directory the workers share: prometheus-client then keeps
each worker's values in files there, and `exposition()` (what `/metrics` answers) adds up
the files of every worker, whichever worker the scrape reaches.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path
from typing import Final

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
    values,
)

from cartlib.store.metrics import refresh_pool_gauges

MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
# prometheus-client picks its value class from the environment when first imported: that
# choice, not the environment now, says whether this process writes to the shared files.
MULTIPROCESS: Final[bool] = values.ValueClass is not values.MutexValue

_HTTP_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HTTP_REQUESTS = Counter(
    "http_requests",
    "HTTP requests answered, by method, route template and status code.",
    ["method", "handler", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route template.",
    ["method", "handler"],
    buckets=_HTTP_BUCKETS,
)

# A gauge, not an Info: multiprocess mode has no Info. `service_name`, not `service`: the
# Prometheus Operator gives every series a `service` target label.
BUILD_INFO = Gauge(
    "storefront_build_info",
    "Always 1; labelled with the service and its version.",
    ["service_name", "version"],
    multiprocess_mode="max",
)


def exposition() -> bytes:
    """The body of a `/metrics` scrape: this process's metrics, or every worker's."""
    refresh_pool_gauges()
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    directory = os.environ[MULTIPROC_DIR_ENV]
    _forget_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


def forget_this_process() -> None:
    """At a worker's shutdown: drop its live gauges (pool sizes) from the shared files.
    Its counters stay, so totals do not go down when a worker stops."""
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid(), os.environ[MULTIPROC_DIR_ENV])  # type: ignore[no-untyped-call]


def _forget_dead_workers(directory: str) -> None:
    # uvicorn replaces a worker that died without shutting down (killed, out of memory)
    # and offers no hook for it: find the live gauges of processes that are gone.
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), directory)  # type: ignore[no-untyped-call]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, but another user's
        return True
    return True


def use_multiprocess_dir(configured: str | None, *, workers: int) -> Path | None:
    """Before uvicorn starts its workers: point `PROMETHEUS_MULTIPROC_DIR` at a directory
    for their metric files, or leave single-process mode alone (one worker, none configured).

    A `configured` directory is created if missing and emptied of other processes' files
    (they hold the counts of an earlier start). Otherwise a new directory is made under the
    temporary directory (`$TMPDIR`, else `/tmp`: writable under a read-only root filesystem)
    and removed when this process exits.
    """
    if configured is None and workers == 1:
        return None
    if configured is not None:
        directory = Path(configured)
        directory.mkdir(parents=True, exist_ok=True)
        own = f"_{os.getpid()}"
        for stale in directory.glob("*.db"):
            if not stale.stem.endswith(own):  # this process's own files are in use
                stale.unlink(missing_ok=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="storefront-metrics-"))
        atexit.register(shutil.rmtree, directory, ignore_errors=True)
    os.environ[MULTIPROC_DIR_ENV] = str(directory)
    return directory
