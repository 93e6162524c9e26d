"""The benchmark harness: `make bench` (python -m bench) and `make bench-quick` (--quick).

Starts a private Redis, both services (production settings, one worker) and the floor on
loopback; measures the instrumentation cost; then drives each scenario with wrk for a
warm-up and a measured run, taking Redis's INFO just around the measured run. Writes
`<out>/<date>.json` and `<out>/<date>.png` and prints the scenario and target tables.
Everything it starts is stopped at the end, also on Ctrl-C or SIGTERM.

Scenarios, all add-to-cart ones adding one unit of an item to an existing line:

    floor            the bare ASGI app (bench/floor.py) getting the add-to-cart requests
    add_small        POST /cart/items on many 5-line carts
    add_big          POST /cart/items on carts that hold 500 lines
    get_cart         GET /cart of 5-line carts
    checkout         POST /checkout, each request ordering a different prefilled 3-line cart
    add_small_c<N>   add_small at 1, 8 and 128 connections (32 is add_small)
    add_small_2w     add_small with inventory on two uvicorn workers (WEB_CONCURRENCY=2)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import signal
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from run_stack import StartupError

from bench import REPO, data, report
from bench.instrumentation import measure as measure_instrumentation
from bench.redisstats import RedisCounter, delta
from bench.stack import Process, Stack, start_stack
from bench.wrk import WrkError, run_wrk, wrk_binary, wrk_version

CONNECTIONS = 32
SWEEP = (1, 8, 32, 128)
SMALL_LINES = 5
BIG_LINES = 500
CHECKOUT_LINES = 3
# Checkout carts to prefill: every checkout empties one, so prefill for this many times the
# fastest rate measured so far (the floor's or add-to-cart's), which checkout cannot beat.
CHECKOUT_HEADROOM = 1.5

RESULTS = REPO / "bench" / "results"
RUNS = REPO / ".run" / "bench"

SCENARIO_NAMES = (
    "floor",
    "add_small",
    "add_big",
    "get_cart",
    "checkout",
    *(f"add_small_c{c}" for c in SWEEP if c != CONNECTIONS),
    "add_small_2w",
)


@dataclass(frozen=True)
class Mode:
    name: str
    warmup_s: int
    duration_s: int
    small_carts: int
    big_carts: int
    get_carts: int
    instrumentation_calls: int
    instrumentation_rounds: int


FULL = Mode("full", 3, 15, 5000, 200, 2000, 5000, 9)
QUICK = Mode("quick", 1, 2, 500, 40, 200, 300, 3)


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


class Harness:
    def __init__(self, mode: Mode, stack: Stack, threads: int) -> None:
        self.mode = mode
        self.stack = stack
        self.threads = threads
        self.redis = redis.Redis.from_url(stack.redis_url)
        self.counter = RedisCounter(self.redis)
        self.data_dir = stack.run_dir / "data"
        self.wrk_log = stack.run_dir / "wrk.log"
        self.scenarios: dict[str, dict[str, Any]] = {}

    def carts(self, name: str, *, carts: int, lines: int, prefill: bool = True) -> data.CartSet:
        return data.make_carts(
            self.redis,
            self.stack.token_secret,
            self.data_dir,
            name,
            carts=carts,
            lines=lines,
            prefill=prefill,
        )

    def run(
        self,
        name: str,
        server: Process,
        script: str,
        carts: data.CartSet,
        *,
        connections: int = CONNECTIONS,
        warmup_carts: data.CartSet | None = None,
    ) -> dict[str, Any]:
        """A warm-up run, then the measured run with Redis INFO taken just around it."""
        warm = warmup_carts or carts
        warmup = run_wrk(
            server.url,
            script,
            connections=connections,
            duration_s=self.mode.warmup_s,
            threads=self.threads,
            env=_wrk_env(warm),
            log=self.wrk_log,
        )
        self.counter.settle()
        before = self.counter.snapshot()
        log_offset = server.log.stat().st_size
        result = run_wrk(
            server.url,
            script,
            connections=connections,
            duration_s=self.mode.duration_s,
            threads=self.threads,
            env=_wrk_env(carts),
            log=self.wrk_log,
        )
        self.counter.settle()
        after = self.counter.snapshot()
        service_log = log_messages(server.log, log_offset)
        percentiles = [[q, micros / 1000] for q, micros in result.latency_us["percentiles"]]
        record: dict[str, Any] = {
            "server": server.name,
            "script": script,
            "connections": connections,
            "wrk_threads": min(self.threads, connections),
            "workers": server.workers,
            "carts": carts.carts,
            "cart_lines": carts.lines,
            "duration_s": result.duration_s,
            "requests": result.requests,
            "rps": result.rps,
            "latency_ms": {
                "p50": result.percentile_ms(50),
                "p90": result.percentile_ms(90),
                "p99": result.percentile_ms(99),
                "p99.9": result.percentile_ms(99.9),
                "max": result.latency_us["max"] / 1000,
                "mean": result.latency_us["mean"] / 1000,
                "stdev": result.latency_us["stdev"] / 1000,
            },
            "latency_percentiles_ms": percentiles,
            "errors": result.errors,
            "errors_total": result.errors_total,
            "warmup_errors_total": warmup.errors_total,
            "data_wrapped": result.data_wrapped + warmup.data_wrapped,
            # What the server logged during the measured run (warnings and up): message -> count.
            "service_log": service_log,
            "redis": delta(before, after, result.sent),
        }
        self.scenarios[name] = record
        lat = record["latency_ms"]
        say(
            f"{name:<16} c{connections:<4} {record['rps']:8.0f} req/s   "
            f"p50 {lat['p50']:6.2f} ms  p99 {lat['p99']:7.2f} ms   "
            f"errors {record['errors_total']}   "
            f"round trips {record['redis']['round_trips_per_request']:.3f}   "
            f"commands {record['redis']['commands_per_request']:.2f}   "
            f"Redis CPU {record['redis']['cpu_us_per_request']:.0f} us"
        )
        for message, count in service_log.items():
            say(f"{name}: the server logged {count} x {message}")
        if warmup.errors_total:
            say(f"warning: {name}: {warmup.errors_total} errors during the warm-up")
        if record["data_wrapped"]:
            say(f"warning: {name}: ran out of prefilled carts ({record['data_wrapped']} reused)")
        return record

    def run_all(self) -> None:
        mode, stack = self.mode, self.stack
        floor, inventory, checkout = stack["floor"], stack["inventory"], stack["checkout"]

        floor_carts = self.carts("floor", carts=mode.small_carts, lines=SMALL_LINES, prefill=False)
        self.run("floor", floor, "add_to_cart.lua", floor_carts)
        small = self.carts("add-small-c32", carts=mode.small_carts, lines=SMALL_LINES)
        self.run("add_small", inventory, "add_to_cart.lua", small)
        big = self.carts("add-big", carts=mode.big_carts, lines=BIG_LINES)
        self.run("add_big", inventory, "add_to_cart.lua", big)
        viewed = self.carts("get-cart", carts=mode.get_carts, lines=SMALL_LINES)
        self.run("get_cart", inventory, "get_cart.lua", viewed)

        fastest = max(self.scenarios["floor"]["rps"], self.scenarios["add_small"]["rps"])
        needed = math.ceil(fastest * CHECKOUT_HEADROOM * (mode.duration_s + 1)) + 100
        warm_needed = math.ceil(fastest * CHECKOUT_HEADROOM * (mode.warmup_s + 1)) + 100
        say(f"prefilling {needed + warm_needed} carts for checkout")
        orders = self.carts("checkout", carts=needed, lines=CHECKOUT_LINES)
        warm_orders = self.carts("checkout-warmup", carts=warm_needed, lines=CHECKOUT_LINES)
        self.run("checkout", checkout, "checkout.lua", orders, warmup_carts=warm_orders)

        for connections in SWEEP:
            if connections == CONNECTIONS:
                continue
            carts = self.carts(
                f"add-small-c{connections}", carts=mode.small_carts, lines=SMALL_LINES
            )
            self.run(
                f"add_small_c{connections}",
                inventory,
                "add_to_cart.lua",
                carts,
                connections=connections,
            )

        say("restarting inventory with WEB_CONCURRENCY=2")
        inventory = stack.restart_service("inventory", workers=2)
        two = self.carts("add-small-2w", carts=mode.small_carts, lines=SMALL_LINES)
        self.run("add_small_2w", inventory, "add_to_cart.lua", two)


def log_messages(log: Path, offset: int) -> dict[str, int]:
    """The messages of the JSON log lines written to `log` after `offset`, counted (other
    lines count as they are)."""
    counts: dict[str, int] = {}
    with log.open("rb") as file:
        file.seek(offset)
        for raw in file.read().decode(errors="replace").splitlines():
            if not raw.strip():
                continue
            try:
                message = str(json.loads(raw).get("message", raw))
            except (ValueError, AttributeError):
                message = raw
            counts[message] = counts.get(message, 0) + 1
    return counts


def _wrk_env(carts: data.CartSet) -> dict[str, str]:
    return {
        "BENCH_TOKENS": str(carts.tokens_file),
        "BENCH_ITEMS": str(carts.items_file),
        "BENCH_LINES": str(carts.lines),
    }


def start(run_dir: Path, *, catalog: Path | None = None, floor: bool = True) -> Stack:
    """Redis, both services (one worker each) and, with `floor`, the floor; all ready."""
    run_dir.mkdir(parents=True, exist_ok=True)
    catalog = catalog or data.write_catalog(run_dir / "catalog.json")
    stack = start_stack(run_dir, catalog)
    try:
        say(f"started {stack.redis_description} at {stack.redis_url}")
        for name in ("inventory", "checkout"):
            server = stack.start_service(name)
            say(f"{name} ready at {server.url} (pid {server.pid}, 1 worker)")
        if floor:
            server = stack.start_floor()
            say(f"floor ready at {server.url} (pid {server.pid})")
    except BaseException:
        stack.stop()
        raise
    return stack


def bench(mode: Mode, out_dir: Path, threads: int) -> dict[str, Any]:
    wrk_binary()  # fail early, before starting anything
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    run_dir = RUNS / f"{mode.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"{mode.name} run; logs and data in {run_dir}")
    load = os.getloadavg()[0]
    if load > 1.0:
        say(f"warning: load average {load:.1f} before starting: figures will be low and noisy")
    stack = start(run_dir)
    try:
        harness = Harness(mode, stack, threads)
        server_info = harness.redis.info("server")
        machine = report.machine_facts(server_info, stack.redis_description, wrk_version())
        say("measuring the instrumentation cost (cartlib call vs bare redis-py call)")
        instrumentation = asyncio.run(
            measure_instrumentation(
                stack.redis_url, mode.instrumentation_calls, mode.instrumentation_rounds
            )
        )
        say(
            f"instrumentation: bare {instrumentation['bare_us']:.1f} us, instrumented "
            f"{instrumentation['instrumented_us']:.1f} us, ratio {instrumentation['ratio']:.3f} "
            f"(fastest rounds: {instrumentation['best_ratio']:.3f})"
        )
        harness.run_all()
        harness.redis.close()
    finally:
        stack.stop()
    scenarios = harness.scenarios
    targets = report.evaluate(scenarios, instrumentation)
    finished = datetime.now(UTC)
    result: dict[str, Any] = {
        "schema": 1,
        "mode": mode.name,
        "started_at": started.isoformat(),
        "finished_at": finished.isoformat(),
        "elapsed_s": round((finished - started).total_seconds(), 1),
        "settings": {
            "connections": CONNECTIONS,
            "sweep": list(SWEEP),
            "warmup_s": mode.warmup_s,
            "duration_s": mode.duration_s,
            "wrk_threads": threads,
            "small_cart_lines": SMALL_LINES,
            "big_cart_lines": BIG_LINES,
            "checkout_cart_lines": CHECKOUT_LINES,
            "service_env": {
                "LOG_LEVEL": "warning",
                "WEB_CONCURRENCY": "1 (2 in add_small_2w)",
                "CART_MAX_LINES": "1000",
                "CATALOG_FILE": f"{data.ITEM_COUNT} items, stock {data.STOCK} each",
            },
        },
        "machine": {**machine, "load_average_at_end": list(os.getloadavg())},
        "instrumentation": instrumentation,
        "scenarios": scenarios,
        "sweep": [
            {"connections": c, "scenario": "add_small" if c == CONNECTIONS else f"add_small_c{c}"}
            for c in SWEEP
        ],
        "ratios": {
            "add_small_vs_floor": scenarios["add_small"]["rps"] / scenarios["floor"]["rps"],
            "add_big_vs_add_small": scenarios["add_big"]["rps"] / scenarios["add_small"]["rps"],
            "two_workers_vs_one": scenarios["add_small_2w"]["rps"] / scenarios["add_small"]["rps"],
        },
        "targets": report.targets_json(targets),
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / f"{stamp}.json"
    json_path.write_text(json.dumps(result, indent=2) + "\n")
    chart_path = out_dir / f"{stamp}.png"
    report.write_chart(result, chart_path)
    print()
    print(report.scenario_table(scenarios))
    print()
    print(report.targets_table(targets))
    print()
    say(f"wrote {_shown(json_path)} and {_shown(chart_path)} ({result['elapsed_s']:.0f} s)")
    return result


def _shown(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(REPO))
    except ValueError:
        return str(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench", description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument(
        "--quick", action="store_true", help="a few seconds per scenario (what CI runs)"
    )
    parser.add_argument(
        "--out-dir",
        type=Path,
        help="where the JSON and PNG go (default: bench/results, or .run/bench/quick with --quick)",
    )
    parser.add_argument("--wrk-threads", type=int, default=1, help="wrk -t (default 1)")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    out_dir = args.out_dir or (RUNS / "quick" if args.quick else RESULTS)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        bench(mode, out_dir, args.wrk_threads)
    except (StartupError, WrkError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Stopped):
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
