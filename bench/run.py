"""The benchmark harness: `make bench` (python -m bench) and `make bench-quick` (--quick).

Starts a private Redis, both services (production settings, one worker) and the floor on
loopback; measures the instrumentation cost; then drives each scenario with wrk for a
warm-up and a measured run, taking Redis's INFO just around the measured run. A full run
measures every scenario three times (5 s each), interleaved, and reports medians; the
quick one once for 2 s. Writes `<out>/<date>.json` and `<out>/<date>.png` and prints the
scenario and target tables. Everything it starts is stopped at the end, also on Ctrl-C or
SIGTERM.

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
import shutil
import signal
import statistics
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench import REPO, data, report
from bench.instrumentation import measure as measure_instrumentation
from bench.redisstats import Delta, RedisCounter, delta
from bench.stack import Stack, start_stack
from bench.wrk import WrkError, WrkResult, run_wrk, wrk_binary, wrk_version
from devstack.processes import StartupError

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
    warmup_s: int  # before a scenario's first round
    rewarm_s: int  # before each later round (another scenario ran in between)
    duration_s: int  # one measured round
    rounds: int  # measured rounds per scenario, interleaved across scenarios
    small_carts: int
    big_carts: int
    get_carts: int
    instrumentation_calls: int
    instrumentation_rounds: int


FULL = Mode("full", 3, 1, 5, 3, 5000, 200, 2000, 2000, 25)
QUICK = Mode("quick", 1, 1, 2, 1, 500, 40, 200, 300, 4)


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


def say(message: str) -> None:
    print(f"bench: {message}", flush=True)


@dataclass
class Scenario:
    """One scenario and its measured rounds so far."""

    name: str
    server: str  # a key of Stack.servers
    script: str
    carts: data.CartSet | None  # None: made per round (checkout)
    connections: int = CONNECTIONS
    rounds: list[Round] = field(default_factory=list)


@dataclass(frozen=True)
class Round:
    carts: int
    workers: int
    wrk: WrkResult
    warmup_errors: int
    warmup_wrapped: int
    redis: Delta
    service_log: dict[str, int]


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
        self._rounds: dict[str, list[Round]] = {}

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

    def measure(
        self,
        scenario: Scenario,
        carts: data.CartSet,
        *,
        warmup_s: int,
        warmup_carts: data.CartSet | None = None,
    ) -> Round:
        """A warm-up run, then a measured run with Redis INFO taken just around it."""
        server = self.stack[scenario.server]
        common: dict[str, Any] = {
            "connections": scenario.connections,
            "threads": self.threads,
            "log": self.wrk_log,
        }
        warm = run_wrk(
            server.url,
            scenario.script,
            duration_s=warmup_s,
            env=_wrk_env(warmup_carts or carts),
            **common,
        )
        self.counter.settle()
        before = self.counter.snapshot()
        log_offset = server.log.stat().st_size
        result = run_wrk(
            server.url,
            scenario.script,
            duration_s=self.mode.duration_s,
            env=_wrk_env(carts),
            **common,
        )
        self.counter.settle()
        after = self.counter.snapshot()
        measured = Round(
            carts=carts.carts,
            workers=server.workers,
            wrk=result,
            warmup_errors=warm.errors_total,
            warmup_wrapped=warm.data_wrapped,
            redis=delta(before, after),
            service_log=log_messages(server.log, log_offset),
        )
        scenario.rounds.append(measured)
        lat = result.latency_us
        say(
            f"{scenario.name:<16} c{scenario.connections:<4} round {len(scenario.rounds)}: "
            f"{result.rps:6.0f} req/s  p50 {result.percentile_ms(50):6.2f} ms  "
            f"p99 {result.percentile_ms(99):7.2f} ms  errors {result.errors_total}"
            + (f" (warm-up {warm.errors_total})" if warm.errors_total else "")
            + f"  max {lat['max'] / 1000:.0f} ms"
        )
        for message, count in measured.service_log.items():
            say(f"{scenario.name}: the server logged {count} x {message}")
        return measured

    def checkout_carts(self, round_index: int) -> tuple[data.CartSet, data.CartSet]:
        """Carts for one checkout round and its warm-up: every request empties one, so
        prefill for CHECKOUT_HEADROOM x the fastest rate measured so far (the floor's or
        add-to-cart's), which checkout cannot beat."""
        fastest = max(
            round_.wrk.rps for name in ("floor", "add_small") for round_ in self._rounds[name]
        )
        warmup_s = self.mode.warmup_s if round_index == 0 else self.mode.rewarm_s
        needed = math.ceil(fastest * CHECKOUT_HEADROOM * (self.mode.duration_s + 1)) + 100
        warm_needed = math.ceil(fastest * CHECKOUT_HEADROOM * (warmup_s + 1)) + 100
        say(f"prefilling {needed + warm_needed} carts for checkout round {round_index + 1}")
        suffix = f"r{round_index + 1}"
        orders = self.carts(f"checkout-{suffix}", carts=needed, lines=CHECKOUT_LINES)
        warm = self.carts(f"checkout-warmup-{suffix}", carts=warm_needed, lines=CHECKOUT_LINES)
        return orders, warm

    def run_all(self) -> None:
        mode = self.mode
        small = mode.small_carts
        scenarios = [
            Scenario(
                "floor",
                "floor",
                "add_to_cart.lua",
                self.carts("floor", carts=small, lines=SMALL_LINES, prefill=False),
            ),
            Scenario(
                "add_small",
                "inventory",
                "add_to_cart.lua",
                self.carts("add-small-c32", carts=small, lines=SMALL_LINES),
            ),
            Scenario(
                "add_big",
                "inventory",
                "add_to_cart.lua",
                self.carts("add-big", carts=mode.big_carts, lines=BIG_LINES),
            ),
            Scenario(
                "get_cart",
                "inventory",
                "get_cart.lua",
                self.carts("get-cart", carts=mode.get_carts, lines=SMALL_LINES),
            ),
            Scenario("checkout", "checkout", "checkout.lua", None),
        ]
        for connections in SWEEP:
            if connections != CONNECTIONS:
                carts = self.carts(f"add-small-c{connections}", carts=small, lines=SMALL_LINES)
                scenarios.append(
                    Scenario(
                        f"add_small_c{connections}",
                        "inventory",
                        "add_to_cart.lua",
                        carts,
                        connections,
                    )
                )
        self._rounds = {scenario.name: scenario.rounds for scenario in scenarios}
        # Rounds are interleaved: a burst of load from elsewhere on the machine then hits one
        # round of several scenarios rather than every round of one.
        for index in range(mode.rounds):
            warmup_s = mode.warmup_s if index == 0 else mode.rewarm_s
            for scenario in scenarios:
                if scenario.carts is None:
                    orders, warm = self.checkout_carts(index)
                    self.measure(scenario, orders, warmup_s=warmup_s, warmup_carts=warm)
                else:
                    self.measure(scenario, scenario.carts, warmup_s=warmup_s)

        say("restarting inventory with WEB_CONCURRENCY=2")
        self.stack.restart_service("inventory", workers=2)
        two = Scenario(
            "add_small_2w",
            "inventory",
            "add_to_cart.lua",
            self.carts("add-small-2w", carts=small, lines=SMALL_LINES),
        )
        for index in range(mode.rounds):
            assert two.carts is not None
            self.measure(two, two.carts, warmup_s=mode.warmup_s if index == 0 else mode.rewarm_s)
        scenarios.append(two)

        order = {name: index for index, name in enumerate(SCENARIO_NAMES)}
        for scenario in sorted(scenarios, key=lambda s: order[s.name]):
            self.scenarios[scenario.name] = self.summarise(scenario)

    def summarise(self, scenario: Scenario) -> dict[str, Any]:
        """One record from a scenario's rounds: req/s and each latency percentile are the
        medians over rounds; requests, errors and Redis counts are totals."""
        rounds = scenario.rounds
        first = rounds[0].wrk
        quantiles = [q for q, _ in first.latency_us["percentiles"]]
        percentiles = [
            [q, statistics.median(r.wrk.percentile_ms(q) for r in rounds)] for q in quantiles
        ]
        redis_total = Delta()
        errors: dict[str, int] = {}
        service_log: dict[str, int] = {}
        for r in rounds:
            redis_total = redis_total + r.redis
            for kind, count in r.wrk.errors.items():
                errors[kind] = errors.get(kind, 0) + count
            for message, count in r.service_log.items():
                service_log[message] = service_log.get(message, 0) + count
        record: dict[str, Any] = {
            "server": scenario.server,
            "script": scenario.script,
            "connections": scenario.connections,
            "wrk_threads": min(self.threads, scenario.connections),
            "workers": rounds[0].workers,
            "carts": sum(r.carts for r in rounds) if scenario.carts is None else rounds[0].carts,
            "cart_lines": scenario.carts.lines if scenario.carts else CHECKOUT_LINES,
            "rounds": len(rounds),
            "duration_s": sum(r.wrk.duration_s for r in rounds),
            "requests": sum(r.wrk.requests for r in rounds),
            "rps": statistics.median(r.wrk.rps for r in rounds),
            "rps_rounds": [r.wrk.rps for r in rounds],
            "latency_ms": {
                "p50": statistics.median(r.wrk.percentile_ms(50) for r in rounds),
                "p90": statistics.median(r.wrk.percentile_ms(90) for r in rounds),
                "p99": statistics.median(r.wrk.percentile_ms(99) for r in rounds),
                "p99.9": statistics.median(r.wrk.percentile_ms(99.9) for r in rounds),
                "max": max(r.wrk.latency_us["max"] for r in rounds) / 1000,
                "mean": statistics.median(r.wrk.latency_us["mean"] for r in rounds) / 1000,
            },
            "p99_rounds_ms": [r.wrk.percentile_ms(99) for r in rounds],
            "latency_percentiles_ms": percentiles,
            "errors": errors,
            "errors_total": sum(errors.values()),
            "warmup_errors_total": sum(r.warmup_errors for r in rounds),
            "data_wrapped": sum(r.wrk.data_wrapped + r.warmup_wrapped for r in rounds),
            # What the server logged during the measured runs (warnings and up): message -> count.
            "service_log": service_log,
            "redis": redis_total.per_request(sum(r.wrk.sent for r in rounds)),
        }
        if record["data_wrapped"]:
            say(f"warning: {scenario.name}: ran out of prefilled carts")
        return record


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


def start(
    run_dir: Path,
    *,
    catalog: Path | None = None,
    floor: bool = True,
    modules: dict[str, str] | None = None,
) -> Stack:
    """Redis, both services (one worker each; `modules`: what runs a service instead of its
    package) and, with `floor`, the floor; all ready."""
    run_dir.mkdir(parents=True, exist_ok=True)
    catalog = catalog or data.write_catalog(run_dir / "catalog.json")
    stack = start_stack(run_dir, catalog)
    stack.modules.update(modules or {})
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


FRAMEWORK_FREE = {"inventory": "bench.framework_free"}


def bench(
    mode: Mode,
    out_dir: Path,
    threads: int,
    keep_data: bool = False,
    modules: dict[str, str] | None = None,
) -> dict[str, Any]:
    wrk_binary()  # fail early, before starting anything
    started = datetime.now(UTC)
    # A run of other code than the services' is written apart (`framework-free-<date>`).
    prefix = "framework-free-" if modules == FRAMEWORK_FREE else ""
    stamp = prefix + started.strftime("%Y-%m-%dT%H%M%SZ")
    run_dir = RUNS / f"{mode.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"{mode.name} run; logs and data in {run_dir}")
    load = os.getloadavg()[0]
    if load > 1.0:
        say(f"warning: load average {load:.1f} before starting: figures will be low and noisy")
    stack = start(run_dir, modules=modules)
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
        if not keep_data:
            # Tokens of every cart (tens of MB in a full run); the logs stay.
            shutil.rmtree(run_dir / "data", ignore_errors=True)
    scenarios = harness.scenarios
    targets = report.evaluate(scenarios, instrumentation)
    add_vs_floor, _ = report.paired_ratio(scenarios["add_small"], scenarios["floor"])
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
            "rounds": mode.rounds,
            "warmup_s": mode.warmup_s,
            "rewarm_s": mode.rewarm_s,
            "duration_s_per_round": mode.duration_s,
            "wrk_threads": threads,
            "small_cart_lines": SMALL_LINES,
            "big_cart_lines": BIG_LINES,
            "checkout_cart_lines": CHECKOUT_LINES,
            "service_modules": modules or {},
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
            "add_small_vs_floor": add_vs_floor,
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
    parser.add_argument(
        "--keep-data", action="store_true", help="keep the tokens and item files of the run"
    )
    parser.add_argument(
        "--framework-free",
        action="store_true",
        help="inventory's add-to-cart served by bench/framework_free.py (the framework's cost)",
    )
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    out_dir = args.out_dir or (RUNS / "quick" if args.quick else RESULTS)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        modules = FRAMEWORK_FREE if args.framework_free else None
        bench(mode, out_dir, args.wrk_threads, args.keep_data, modules)
    except (StartupError, WrkError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Stopped):
        print("bench: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
