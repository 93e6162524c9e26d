"""Several uvicorn workers (WEB_CONCURRENCY=2): one service as real processes against a
real Redis. Whichever worker answers a scrape, /metrics counts every worker's requests;
a killed worker's counts stay, its pool gauges go; the metric files go at exit."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from tests.services._stack import Service, start_service, stop_service

REQUESTS = 300
WORKERS = 2
MAX_CONNECTIONS = 16  # REDIS_MAX_CONNECTIONS of each worker's pool
READYZ = {"handler": "/readyz", "method": "GET", "status": "200"}


Scraped = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(client: httpx.Client, url: str) -> Scraped:
    """One scrape of /metrics."""
    response = client.get(f"{url}/metrics")
    response.raise_for_status()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def sample(scraped: Scraped, name: str, **labels: str) -> float:
    return scraped.get((name, frozenset(labels.items())), 0.0)


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout} s: {what}")
        time.sleep(0.1)


def workers_of(master: int) -> set[int]:
    """The uvicorn worker processes of `master` (not multiprocessing's resource tracker)."""
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return {
        int(pid) for pid in children if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    }


def environ_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def in_file(directory: Path, kind: str, pid: int, name: str, **labels: str) -> float:
    """A value as one worker wrote it to its own file (`kind`: counter, gauge_livesum)."""
    merged = MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
        [str(directory / f"{kind}_{pid}.db")]
    )
    for metric in merged:
        for found in metric.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    return 0.0


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """No keep-alive: every request is a new connection, which either worker may accept."""
    with httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0)) as client:
        yield client


@pytest.fixture
def service(redis7_url: str, client: httpx.Client) -> Iterator[Service]:
    """inventory with two workers; stopped (if the test has not) at the end."""
    service = start_service(
        "inventory",
        redis7_url,
        WEB_CONCURRENCY=str(WORKERS),
        REDIS_MAX_CONNECTIONS=str(MAX_CONNECTIONS),
        PROMETHEUS_MULTIPROC_DIR=None,  # the default: a new directory under /tmp
    )
    try:
        # /healthz answers as soon as one worker has started: wait for every worker's pool.
        wait_for(
            lambda: (
                sample(scrape(client, service.url), "cartlib_redis_pool_max_connections")
                == WORKERS * MAX_CONNECTIONS
            ),
            "both workers serving",
        )
        yield service
    finally:
        if service.process.poll() is None:
            stop_service(service)


def test_counts_add_up_across_workers_whichever_answers_the_scrape(
    service: Service, client: httpx.Client
) -> None:
    workers = workers_of(service.process.pid)
    assert len(workers) == WORKERS
    directory = Path(environ_of(next(iter(workers)))["PROMETHEUS_MULTIPROC_DIR"])
    assert directory.parent == Path(tempfile.gettempdir())
    assert directory.name.startswith("storefront-metrics-")

    # New connections, several at a time: the kernel hands them to both workers.
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(
            pool.map(lambda _: client.get(f"{service.url}/readyz").status_code, range(REQUESTS))
        )
    assert statuses == [200] * REQUESTS

    served = {
        pid: in_file(directory, "counter", pid, "http_requests_total", **READYZ) for pid in workers
    }
    assert all(count > 0 for count in served.values()), served
    assert sum(served.values()) == REQUESTS
    for _ in range(10):
        scraped = scrape(client, service.url)
        assert sample(scraped, "http_requests_total", **READYZ) == REQUESTS
        assert sample(scraped, "cartlib_redis_command_duration_seconds_count", command="PING") == (
            REQUESTS
        )
        assert sample(scraped, "cartlib_redis_pool_max_connections") == WORKERS * MAX_CONNECTIONS
        [build_info] = [dict(labels) for name, labels in scraped if name == "storefront_build_info"]
        assert build_info["service_name"] == "inventory"

    # A worker killed without a shutdown: uvicorn starts another. The dead worker's
    # requests stay counted; its pool stops counting at the next scrape.
    killed = min(workers)
    os.kill(killed, signal.SIGKILL)
    wait_for(lambda: len(workers_of(service.process.pid) - workers) == 1, "a replacement")
    [replacement] = workers_of(service.process.pid) - workers
    wait_for(
        lambda: (
            in_file(directory, "gauge_livesum", replacement, "cartlib_redis_pool_max_connections")
            == MAX_CONNECTIONS
        ),
        "the replacement's pool",
    )
    scraped = scrape(client, service.url)
    # Three pools (48) if the dead worker's were still counted.
    assert sample(scraped, "cartlib_redis_pool_max_connections") == WORKERS * MAX_CONNECTIONS
    assert sample(scraped, "http_requests_total", **READYZ) == REQUESTS
    assert not (directory / f"gauge_livesum_{killed}.db").exists()
    assert (directory / f"counter_{killed}.db").exists()

    stop_service(service)
    assert service.process.returncode == 0
    assert not directory.exists()
