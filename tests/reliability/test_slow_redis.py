"""A Redis that is up but does not answer in time: blocked by `DEBUG SLEEP`, or by another
client's endless Lua script (Redis answers everyone else `BUSY` once the script has run
longer than `busy-reply-threshold`, until `SCRIPT KILL`). The services answer 503 within
about REDIS_SOCKET_TIMEOUT (1 s), never a 500 and never a hang, and are normal afterwards.

The test's Redis enables DEBUG (`enable-debug-command yes`: Redis 7 refuses DEBUG by default)
and lowers `busy-reply-threshold` from 5 s to 500 ms. The chart disables DEBUG in production
(`redis.disabledCommands`, with KEYS), so there a long script, an O(N) command on a huge key
or a stalled disk stalls Redis like this; the services' side is the same.

Run with `-rP` for the figures.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from redis import exceptions as redis_errors

from cartlib.store.errors import StoreError, StoreUnavailable
from cartlib.store.redis import translated
from tests._redis import RestartableRedis
from tests.reliability._faults import (
    Recorder,
    errors_since,
    redis_and_stack,
    redis_error_counts,
    report,
    shopping,
)
from tests.services._outage import assert_no_tracebacks, wait_until_ready
from tests.services._stack import Stack
from tests.services.conftest import Shop

SLEEP_SECONDS = 3
BUSY_THRESHOLD_MS = 500
BUSY_SECONDS = 2.5  # how long the load runs against the busy script before SCRIPT KILL
CLIENTS = 16
ENDLESS_SCRIPT = "local i = 0 while true do i = i + 1 end"
BUSY_REPLY = "BUSY Redis is busy running a script."

SLOW_REDIS_ARGS = (
    "--enable-debug-command",
    "yes",
    "--busy-reply-threshold",
    str(BUSY_THRESHOLD_MS),
)


@pytest.fixture(scope="module")
def slow_stack() -> Iterator[tuple[RestartableRedis, Stack]]:
    with redis_and_stack(SLOW_REDIS_ARGS) as pair:
        yield pair


def other_client(server: RestartableRedis) -> redis.Redis:
    """Another application's connection to the same Redis (no timeout of its own to hit).
    Unnamed: CLIENT SETNAME is refused with BUSY while a script runs, SCRIPT KILL is not."""
    return server.client(socket_timeout=30)


def debug_sleep(server: RestartableRedis, seconds: float) -> None:
    client = other_client(server)
    try:
        client.execute_command("DEBUG", "SLEEP", seconds)  # type: ignore[no-untyped-call]
    finally:
        client.close()


def run_endless_script(server: RestartableRedis) -> str:
    """Run the endless script; returns the error it ends with (SCRIPT KILL)."""
    client = other_client(server)
    try:
        client.eval(ENDLESS_SCRIPT, 0)
    except redis_errors.ResponseError as exc:
        return str(exc)
    finally:
        client.close()
    return "the endless script returned"


def wait_until_busy(server: RestartableRedis, timeout: float = 10.0) -> None:
    """Return once Redis answers BUSY: the script is running and past the threshold."""
    client = other_client(server)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                client.ping()
            except redis_errors.ResponseError as exc:
                if str(exc).startswith("BUSY "):
                    return
                raise
            assert time.monotonic() < deadline, f"Redis not BUSY within {timeout} s"
            time.sleep(0.01)
    finally:
        client.close()


def script_kill(server: RestartableRedis) -> None:
    client = other_client(server)
    try:
        client.script_kill()
    finally:
        client.close()


async def shop_round(shop: Shop, auth: dict[str, str], client: int, recorder: Recorder) -> None:
    """Half the clients read and add to their carts, the other half add and check out."""
    if client % 2 == 0:
        await recorder.send("GET /cart", lambda: shop.cart(auth, shop.checkout))
        await recorder.send("POST /cart/items", lambda: shop.add(auth, "mug"))
        return
    added = await recorder.send("POST /cart/items", lambda: shop.add(auth, "mug"))
    if added is not None and added.status_code == 201:
        await recorder.send("POST /checkout", lambda: shop.pay(auth))


async def shop_until(
    shop: Shop, sessions: list[dict[str, str]], recorder: Recorder, done: asyncio.Future[Any]
) -> None:
    async def one_client(client: int, auth: dict[str, str]) -> None:
        while not done.done():
            await shop_round(shop, auth, client, recorder)

    await asyncio.gather(*(one_client(n, auth) for n, auth in enumerate(sessions)))


async def assert_normal(shop: Shop) -> float:
    """Ready again, and a whole purchase works; returns how long readiness took."""
    ready_after = await wait_until_ready(shop)
    auth = await shop.new_session()
    added = await shop.add(auth, "mug", 2)
    assert added.status_code == 201, added.text
    paid = await shop.pay(auth)
    assert paid.status_code == 200, paid.text
    assert paid.json()["order"]["total_cents"] == 500
    return ready_after


def latency_figures(recorder: Recorder) -> dict[str, object]:
    by_status = Counter(str(a.status) for a in recorder.answers)
    figures: dict[str, object] = {
        "requests": len(recorder.answers),
        "answers by status": dict(sorted(by_status.items())),
        "slowest 503": f"{recorder.slowest_failure():.2f} s",
    }
    succeeded = [a.ended - a.started for a in recorder.answers if a.ok]
    if succeeded:  # answered late, once Redis woke up
        figures["slowest 2xx"] = f"{max(succeeded):.2f} s"
    return figures


@pytest.mark.docker
async def test_debug_sleep_gives_503s_within_the_socket_timeout(
    slow_stack: tuple[RestartableRedis, Stack],
) -> None:
    server, stack = slow_stack
    async with shopping(stack) as shop:
        await shop.put_item("mug", stock=1_000_000, price_cents=250)
        sessions = [await shop.new_session() for _ in range(CLIENTS)]
        errors_before = await redis_error_counts(shop)
        recorder = Recorder()
        sleeping = asyncio.ensure_future(asyncio.to_thread(debug_sleep, server, SLEEP_SECONDS))
        await asyncio.sleep(0.1)  # DEBUG SLEEP has reached Redis
        started = time.monotonic()
        await shop_until(shop, sessions, recorder, sleeping)
        await sleeping  # raises if DEBUG was refused
        ready_after = await assert_normal(shop)
        errors = errors_since(errors_before, await redis_error_counts(shop))

    # A request sent in the last second of the sleep may be answered late but correctly;
    # every other one times out. Either way: 2xx or 503, never a 500 or no answer at all.
    statuses = {a.status for a in recorder.answers}
    assert statuses <= {200, 201, 503}, recorder.failed_by_status()
    assert 503 in statuses, "Redis asleep, yet no request failed: the fault did not happen"
    report(
        f"DEBUG SLEEP {SLEEP_SECONDS} under {CLIENTS} concurrent clients "
        "(REDIS_SOCKET_TIMEOUT 1 s)",
        {
            "load ran for": f"{time.monotonic() - started:.1f} s",
            **latency_figures(recorder),
            "Redis errors seen by the services": errors,
            "ready again after the sleep": f"{ready_after:.2f} s",
        },
    )
    assert_no_tracebacks(stack)


@pytest.mark.docker
async def test_a_busy_script_gives_503s_not_500s(
    slow_stack: tuple[RestartableRedis, Stack],
) -> None:
    server, stack = slow_stack
    async with shopping(stack) as shop:
        await shop.put_item("mug", stock=1_000_000, price_cents=250)
        sessions = [await shop.new_session() for _ in range(CLIENTS)]
        errors_before = await redis_error_counts(shop)
        recorder = Recorder()
        script = asyncio.ensure_future(asyncio.to_thread(run_endless_script, server))
        await asyncio.to_thread(wait_until_busy, server)
        load_over: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        load = asyncio.ensure_future(shop_until(shop, sessions, recorder, load_over))
        await asyncio.sleep(BUSY_SECONDS)
        load_over.set_result(None)
        await load  # every request of the load was answered while the script still ran
        assert not script.done(), f"the endless script ended by itself: {script.result()}"
        killed_at = time.monotonic()
        await asyncio.to_thread(script_kill, server)
        ended_with = await script
        assert "killed" in ended_with.lower(), ended_with
        ready_after = await assert_normal(shop)
        errors = errors_since(errors_before, await redis_error_counts(shop))

    # BUSY is a plain ResponseError in redis-py: it used to become a 500 (StoreError).
    assert recorder.failed_by_status() == {"503": len(recorder.answers)}, (
        f"while Redis answered BUSY every request must be a 503: {recorder.failed_by_status()} "
        f"of {len(recorder.answers)}"
    )
    assert errors.get("ResponseError", 0) > 0, f"the services saw no BUSY reply: {errors}"
    report(
        f"An endless Lua script from another client (busy-reply-threshold {BUSY_THRESHOLD_MS} "
        f"ms), {CLIENTS} concurrent clients for {BUSY_SECONDS} s, then SCRIPT KILL",
        {
            **latency_figures(recorder),
            "Redis errors seen by the services": errors,
            "ready again after SCRIPT KILL": f"{ready_after:.2f} s",
            "SCRIPT KILL to a paid checkout": f"{time.monotonic() - killed_at:.2f} s",
        },
    )
    assert_no_tracebacks(stack)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (f"{BUSY_REPLY} You can only call SCRIPT KILL or SHUTDOWN NOSAVE.", StoreUnavailable),
        (f"{BUSY_REPLY} You can only call FUNCTION KILL or SHUTDOWN NOSAVE.", StoreUnavailable),
        ("BUSYKEY Target key name already exists.", StoreError),
        ("BUSYGROUP Consumer Group name already exists", StoreError),
        ("ERR Error running script", StoreError),
    ],
)
def test_busy_means_unavailable_but_busykey_and_busygroup_do_not(
    reply: str, expected: type[Exception]
) -> None:
    # redis-py gives these replies as plain ResponseErrors, message and all.
    assert type(translated(redis_errors.ResponseError(reply))) is expected
