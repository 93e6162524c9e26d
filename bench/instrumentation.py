"""How much cartlib's instrumentation costs per Redis call, as a ratio measured side by side.

Runs the same cart script through `LuaScript` (timed, errors translated) and through
redis-py's `AsyncScript` directly, alternating rounds so machine noise hits both alike.

    python bench/instrumentation.py [--redis-url redis://127.0.0.1:6379/0] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from cartlib.keys import Keys
from cartlib.scripts import LuaScript, source

Call = Callable[[], Awaitable[object]]


async def timed(call: Call, calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        await call()
    return (time.perf_counter() - started) / calls


async def measure(redis_url: str, calls: int, rounds: int) -> dict[str, float]:
    redis = Redis.from_url(redis_url)
    cart = [Keys().cart("bench-session")]
    await redis.hset(cart[0], mapping={f"item-{index}": 1 for index in range(5)})
    instrumented = LuaScript(redis, "get_cart")
    bare = redis.register_script(source("get_cart"))

    async def with_metrics() -> object:
        return await instrumented(cart)

    async def without_metrics() -> object:
        return await bare(cart)

    await timed(with_metrics, 500)  # warm up: load the script, fill the pool
    await timed(without_metrics, 500)
    bare_times, instrumented_times = [], []
    for _ in range(rounds):
        bare_times.append(await timed(without_metrics, calls))
        instrumented_times.append(await timed(with_metrics, calls))
    await redis.delete(cart[0])
    await redis.aclose()
    bare_us = statistics.median(bare_times) * 1e6
    instrumented_us = statistics.median(instrumented_times) * 1e6
    # The fastest round of each: noise from other processes only ever adds time, so on a
    # busy machine this ratio is the steadier one.
    best_bare_us = min(bare_times) * 1e6
    best_instrumented_us = min(instrumented_times) * 1e6
    return {
        "bare_us": bare_us,
        "instrumented_us": instrumented_us,
        "ratio": instrumented_us / bare_us,
        "best_bare_us": best_bare_us,
        "best_instrumented_us": best_instrumented_us,
        "best_ratio": best_instrumented_us / best_bare_us,
        "calls": calls,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    result = asyncio.run(measure(args.redis_url, args.calls, args.rounds))
    print(
        f"per call (median of {args.rounds} rounds): bare {result['bare_us']:.1f} us, "
        f"instrumented {result['instrumented_us']:.1f} us, ratio {result['ratio']:.3f}; "
        f"fastest rounds: ratio {result['best_ratio']:.3f}"
    )


if __name__ == "__main__":
    main()
