"""How much cartlib's instrumentation costs per Redis call, as a ratio measured side by side.

Runs the same cart script through `LuaScript` (timed, errors translated) and through the
client's `evalsha` directly (the call `LuaScript` makes, without the instrumentation), in
pairs of rounds taken back to back, each pair in the other order than the one before (so
neither variant always runs first). The ratio is the
median of the pairs' ratios: a slow moment of the machine slows both rounds of a pair and
cancels out. A call is a round trip to Redis (about 100 us here) whose latency swings far
more than the few microseconds measured, so the process CPU time per call is measured too:
the instrumentation's own cost, without the wait for Redis.

    python bench/instrumentation.py [--redis-url redis://127.0.0.1:6379/0] [--calls 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

from redis.asyncio import Redis

from cartlib.store.keys import Keys
from cartlib.store.scripts import LuaScript, source

Call = Callable[[], Awaitable[object]]


async def timed(call: Call, calls: int) -> float:
    """Wall time per call."""
    return (await timed_with_cpu(call, calls))[0]


async def timed_with_cpu(call: Call, calls: int) -> tuple[float, float]:
    """Wall time and this process's CPU time, per call."""
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(calls):
        await call()
    return (
        (time.perf_counter() - started) / calls,
        (time.process_time() - cpu_started) / calls,
    )


async def measure(redis_url: str, calls: int, rounds: int) -> dict[str, float]:
    redis = Redis.from_url(redis_url)
    cart = [Keys().cart("bench-session")]
    await redis.hset(cart[0], mapping={f"item-{index}": 1 for index in range(5)})
    instrumented = LuaScript(redis, "get_cart")
    sha = redis.register_script(source("get_cart")).sha

    async def with_metrics() -> object:
        return await instrumented(cart)

    async def without_metrics() -> object:
        return await redis.evalsha(sha, len(cart), *cart)

    await timed(with_metrics, 500)  # warm up: load the script, fill the pool
    await timed(without_metrics, 500)
    bare_times, instrumented_times, ratios, cpu_overheads = [], [], [], []
    for round_index in range(rounds):
        variants = [without_metrics, with_metrics]
        if round_index % 2:
            variants.reverse()
        measured = {variant: await timed_with_cpu(variant, calls) for variant in variants}
        (bare_wall, bare_cpu) = measured[without_metrics]
        (instrumented_wall, instrumented_cpu) = measured[with_metrics]
        bare_times.append(bare_wall)
        instrumented_times.append(instrumented_wall)
        ratios.append(instrumented_wall / bare_wall)
        cpu_overheads.append(instrumented_cpu - bare_cpu)
    await redis.delete(cart[0])
    await redis.aclose()
    bare_us = statistics.median(bare_times) * 1e6
    instrumented_us = statistics.median(instrumented_times) * 1e6
    # The fastest round of each: noise from other processes only ever adds time.
    best_bare_us = min(bare_times) * 1e6
    best_instrumented_us = min(instrumented_times) * 1e6
    return {
        "bare_us": bare_us,
        "instrumented_us": instrumented_us,
        "ratio": statistics.median(ratios),
        "ratio_of_medians": instrumented_us / bare_us,
        "best_bare_us": best_bare_us,
        "best_instrumented_us": best_instrumented_us,
        "best_ratio": best_instrumented_us / best_bare_us,
        "cpu_overhead_us": statistics.median(cpu_overheads) * 1e6,
        "calls": calls,
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=21)
    args = parser.parse_args()
    result = asyncio.run(measure(args.redis_url, args.calls, args.rounds))
    print(
        f"per call (median of {args.rounds} rounds): bare {result['bare_us']:.1f} us, "
        f"instrumented {result['instrumented_us']:.1f} us, ratio {result['ratio']:.3f} "
        f"(median of paired rounds); fastest rounds: ratio {result['best_ratio']:.3f}; "
        f"CPU added per call {result['cpu_overhead_us']:.1f} us"
    )


if __name__ == "__main__":
    main()
