"""add-to-cart over HTTP, side by side: under each uvicorn protocol, and against the floor.

    python -m bench.http_protocols [--rounds 5] [--seconds 5]    (make bench-http)
    python -m bench.http_protocols --variants floor,limited,framework-free

Starts a private Redis and one server process per variant, each the inventory app under
uvicorn with uvloop and the settings of cartlib.web.server, but for what the variant changes:

    httptools       uvicorn's httptools protocol alone (no header limit, no read timeout)
    limited         cartlib.web.http_limits.LimitedHttpProtocol around it (what the services run)
    h11             uvicorn's h11 protocol (pure Python; limits the header block, 16 KiB, but
                    has no read timeout either)
    framework-free  `limited`, with add-to-cart served by bench/framework_free.py (the route's
                    work without the framework: what the framework and dependencies cost)
    floor           bench/floor.py, the bare ASGI app of `make bench`

The default is the three protocols. Then, round after round (each round in a rotated order,
so a burst of load from elsewhere on the machine skews one round of every variant rather than
one variant), drives each with wrk (bench/wrk/add_to_cart.lua, 32 connections) and reads the
server process's CPU time (/proc/<pid>/stat) around the run. Prints, per variant, the median
over rounds of the service CPU per request and of the requests per second, each also as the
median of its per-round ratio to the first variant. Writes every round to
`.run/bench/http-<date>.json`.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from bench import REPO, data
from bench.run import RUNS
from bench.stack import Stack, start_stack
from bench.wrk import WrkError, run_wrk

PROTOCOLS = ("httptools", "limited", "h11")
VARIANTS = (*PROTOCOLS, "framework-free", "floor")
CONNECTIONS = 32
CARTS = 2000
LINES = 5


def serve(variant: str) -> None:
    """The child: the variant's server (cartlib.web.server.run but for what it changes)."""
    import uvicorn

    from cartlib.settings import get_settings
    from cartlib.web import metrics
    from cartlib.web.http_limits import LimitedHttpProtocol
    from cartlib.web.logs import logging_config

    settings = get_settings()
    if variant == "floor":
        from bench.floor import Floor, run

        run(Floor(os.environ["REDIS_URL"]), port=settings.port or 8009)
        return
    from inventory.app import create_app

    metrics.use_multiprocess_dir(settings.prometheus_multiproc_dir, workers=1)
    app = create_app()
    if variant == "framework-free":
        from bench.framework_free import install

        install(app)
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port or 8001,
        loop="uvloop",
        http=variant if variant in ("httptools", "h11") else LimitedHttpProtocol,
        log_config=logging_config(settings.log_level),
        access_log=False,
        server_header=False,
        proxy_headers=False,
        timeout_keep_alive=settings.http_keep_alive_timeout_seconds,
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def measure(variants: tuple[str, ...], rounds: int, seconds: float) -> dict[str, Any]:
    run_dir = RUNS / f"http-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack: Stack = start_stack(run_dir, data.write_catalog(run_dir / "catalog.json"))
    try:
        for variant in variants:
            port = free_port()
            argv = [sys.executable, "-m", "bench.http_protocols", "--serve", variant]
            # The service's environment, with bench/ importable for the child's --serve.
            child_env = dict(stack.service_env(port, 1), PYTHONPATH=str(REPO))
            ready_path = "/healthz" if variant == "floor" else "/readyz"
            stack._start(variant, argv, child_env, port, 1, ready_path=ready_path)
            print(f"bench.http: {variant} ready at {stack[variant].url}", flush=True)
        client = redis.Redis.from_url(stack.redis_url)
        carts = data.make_carts(
            client, stack.token_secret, run_dir / "data", "http", carts=CARTS, lines=LINES
        )
        env = {
            "BENCH_TOKENS": str(carts.tokens_file),
            "BENCH_ITEMS": str(carts.items_file),
            "BENCH_LINES": str(carts.lines),
        }
        for variant in variants:  # warm-up
            run_wrk(
                stack[variant].url,
                "add_to_cart.lua",
                connections=CONNECTIONS,
                duration_s=2,
                threads=1,
                env=env,
            )
        results: list[dict[str, Any]] = []
        for index in range(rounds):
            shift = index % len(variants)
            order = variants[shift:] + variants[:shift]
            row: dict[str, Any] = {}
            for variant in order:
                pid = stack[variant].pid
                before = cpu_seconds(pid)
                result = run_wrk(
                    stack[variant].url,
                    "add_to_cart.lua",
                    connections=CONNECTIONS,
                    duration_s=seconds,
                    threads=1,
                    env=env,
                )
                cpu = cpu_seconds(pid) - before
                if result.errors_total:
                    raise SystemExit(f"{variant}: wrk errors {result.errors}")
                row[variant] = {
                    "requests": result.requests,
                    "rps": result.rps,
                    "cpu_us_per_request": cpu / result.requests * 1e6,
                }
            results.append(row)
            summary = ", ".join(
                f"{p} {row[p]['cpu_us_per_request']:.0f} us {row[p]['rps']:.0f}/s" for p in variants
            )
            print(f"bench.http: round {index + 1}: {summary}", flush=True)
        out = {
            "variants": list(variants),
            "rounds": results,
            "connections": CONNECTIONS,
            "seconds": seconds,
        }
        (run_dir.parent / f"{run_dir.name}.json").write_text(json.dumps(out, indent=2))
        return out
    finally:
        stack.stop()


def report(out: dict[str, Any]) -> None:
    rounds, variants = out["rounds"], out["variants"]
    first = variants[0]
    print(f"{'variant':<15} {'CPU us/req':>10} {'vs ' + first:>18} {'req/s':>7} {'vs':>6}")
    for variant in variants:
        cpu = statistics.median(r[variant]["cpu_us_per_request"] for r in rounds)
        rps = statistics.median(r[variant]["rps"] for r in rounds)
        cpu_ratio = statistics.median(
            r[variant]["cpu_us_per_request"] / r[first]["cpu_us_per_request"] for r in rounds
        )
        rps_ratio = statistics.median(r[variant]["rps"] / r[first]["rps"] for r in rounds)
        print(f"{variant:<15} {cpu:>10.0f} {cpu_ratio:>18.3f} {rps:>7.0f} {rps_ratio:>6.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_protocols")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument(
        "--variants",
        default=",".join(PROTOCOLS),
        help=f"comma-separated, the first the reference; of {', '.join(VARIANTS)}",
    )
    parser.add_argument("--serve", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    variants = tuple(args.variants.split(","))
    unknown = sorted(set(variants) - set(VARIANTS)) or len(set(variants)) < len(variants)
    if unknown:
        parser.error(f"--variants: each of {', '.join(VARIANTS)} at most once")
    try:
        report(measure(variants, args.rounds, args.seconds))
    except WrkError as exc:
        print(f"bench.http: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
