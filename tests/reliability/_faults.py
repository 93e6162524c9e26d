"""What the fault tests share: a Redis of the module's own (with the options the fault needs)
and both services in front of it, clients that record every answer, and the services' Redis
connections as their /metrics and Redis's CLIENT LIST see them.

Figures are printed (run pytest with `-rP` to see them), never asserted on: a slow machine
must not fail a test, a wrong answer or a hang must.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests._redis import RestartableRedis, run_restartable_redis
from tests.services._outage import CLIENT_TIMEOUT
from tests.services._stack import Stack, running_stack
from tests.services.conftest import Shop

# The name cartlib.store.redis.create_redis gives every pooled connection (CLIENT SETNAME), which
# tells the services' connections apart from the test's own in CLIENT LIST.
SERVICE_CLIENT_NAME = "storefront"
PROBE_CLIENT_NAME = "fault-test-probe"


@contextlib.contextmanager
def redis_and_stack(
    redis_args: Sequence[str] = (), **service_env: str | None
) -> Iterator[tuple[RestartableRedis, Stack]]:
    """A Redis 7 of its own started with `redis_args`, and both services in front of it."""
    with (
        run_restartable_redis("7", args=redis_args) as server,
        running_stack(server.url, **service_env) as stack,
    ):
        yield server, stack


@contextlib.asynccontextmanager
async def shopping(stack: Stack, concurrency: int = 64) -> AsyncIterator[Shop]:
    """A `Shop` whose client gives up after CLIENT_TIMEOUT (a hang fails the request)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=CLIENT_TIMEOUT, limits=limits) as client:
        yield Shop(stack, client)


@dataclass(frozen=True, slots=True)
class Answer:
    """One HTTP request of a test's load: what it asked, when, and what it got."""

    name: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: no HTTP answer (the client's timeout, a reset connection)
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and self.status < 400


@dataclass
class Recorder:
    """Sends requests and keeps every answer."""

    answers: list[Answer] = field(default_factory=list)

    async def send(
        self, name: str, request: Callable[[], Awaitable[httpx.Response]]
    ) -> httpx.Response | None:
        started = time.monotonic()
        try:
            response = await request()
        except httpx.HTTPError as exc:
            self.answers.append(Answer(name, started, time.monotonic(), None, repr(exc)))
            return None
        self.answers.append(Answer(name, started, time.monotonic(), response.status_code))
        return response

    def failures(self, name: str | None = None) -> list[Answer]:
        """The failed requests (those named `name`, if given)."""
        return [
            answer
            for answer in self.answers
            if not answer.ok and (name is None or answer.name == name)
        ]

    def failed_by_status(self) -> dict[str, int]:
        """Failed requests by status code ("no answer" for a hang or a broken connection)."""
        counts = Counter(
            "no answer" if answer.status is None else str(answer.status)
            for answer in self.failures()
        )
        return dict(sorted(counts.items()))

    def slowest_failure(self) -> float:
        return max((answer.ended - answer.started for answer in self.failures()), default=0.0)

    def outage(self) -> tuple[float, float] | None:
        """(start of the first failed request, end of the first successful request after the
        last failed one) in time.monotonic(), or None when nothing failed or nothing
        succeeded after."""
        failures = self.failures()
        if not failures:
            return None
        first_failure = min(answer.started for answer in failures)
        last_failure = max(answer.started for answer in failures)
        recovered = [
            answer.ended for answer in self.answers if answer.ok and answer.started > last_failure
        ]
        return (first_failure, min(recovered)) if recovered else None


@dataclass(frozen=True, slots=True)
class Pool:
    """A service's Redis connection pool, from its `cartlib_redis_pool_*` gauges."""

    idle: int
    in_use: int
    max: int

    @property
    def total(self) -> int:
        return self.idle + self.in_use

    def __str__(self) -> str:
        return f"{self.in_use} in use + {self.idle} idle (max {self.max})"


def _samples(exposition: str) -> Iterator[tuple[str, dict[str, str], float]]:
    for family in text_string_to_metric_families(exposition):
        for sample in family.samples:
            yield sample.name, sample.labels, sample.value


async def scrape(client: httpx.AsyncClient, base: str) -> str:
    response = await client.get(f"{base}/metrics")
    assert response.status_code == 200, response.text
    return response.text


async def pool_of(client: httpx.AsyncClient, base: str) -> Pool:
    """The pool gauges of the service at `base` (read from the pool at scrape time)."""
    by_state: dict[str, int] = {}
    maximum = -1
    for name, labels, value in _samples(await scrape(client, base)):
        if name == "cartlib_redis_pool_connections":
            by_state[labels["state"]] = int(value)
        elif name == "cartlib_redis_pool_max_connections":
            maximum = int(value)
    return Pool(idle=by_state["idle"], in_use=by_state["in_use"], max=maximum)


async def redis_error_counts(shop: Shop) -> Counter[str]:
    """`cartlib_redis_errors_total` of both services, by redis-py error class: the Redis
    replies and failures behind their 503s (BUSY is a plain ResponseError)."""
    errors: Counter[str] = Counter()
    for base in (shop.inventory, shop.checkout):
        for name, labels, value in _samples(await scrape(shop.client, base)):
            if name == "cartlib_redis_errors_total":
                errors[labels["error"]] += int(value)
    return errors


def errors_since(before: Counter[str], after: Counter[str]) -> dict[str, int]:
    return dict(sorted((after - before).items()))


def service_connections(server: RestartableRedis) -> int:
    """How many connections Redis has from the services (CLIENT LIST, by client name)."""
    client = server.client(socket_timeout=5, client_name=PROBE_CLIENT_NAME)
    try:
        clients = client.client_list(_type="normal")
    finally:
        client.close()
    return sum(1 for entry in clients if entry.get("name") == SERVICE_CLIENT_NAME)


def report(title: str, rows: dict[str, object]) -> None:
    """Print figures for `pytest -rP`: a title, then one `name  value` line per row."""
    width = max(len(name) for name in rows)
    lines = "\n".join(f"  {name:<{width}}  {value}" for name, value in rows.items())
    print(f"\n{title}\n{lines}")  # noqa: T201
