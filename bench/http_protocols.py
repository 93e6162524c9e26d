"""What the HTTP limits cost: add-to-cart over real HTTP under each way of serving it.

    python -m bench.http_protocols [--rounds 5] [--seconds 5]    (make bench-http)

Starts a private Redis and one inventory process per protocol, each the same app under
uvicorn with uvloop and the settings of cartlib.web.server, but for `http=`:

    httptools   uvicorn's httptools protocol alone (no header limit, no read timeout)
    limited     cartlib.web.http_limits.LimitedHttpProtocol around it (what the services run)
    h11         uvicorn's h11 protocol (pure Python; limits the header block, 16 KiB, but
                has no read timeout either)

Then, round after round (each round in a rotated order, so a burst of load from elsewhere on
the machine skews one round of every protocol rather than one protocol), drives each with
wrk (bench/wrk/add_to_cart.lua, 32 connections) and reads the server process's CPU time
(/proc/<pid>/stat) around the run. Prints, per protocol, the median over rounds of the
service CPU per request and of the requests per second, each also as the median of its
per-round ratio to httptools. Writes every round to `.run/bench/http-<date>.json`.
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
CONNECTIONS = 32
CARTS = 2000
LINES = 5


def serve(protocol: str) -> None:
    """The child: inventory under uvicorn with `protocol` (cartlib.web.server.run but `http=`)."""
    import uvicorn

    from cartlib.settings import get_settings
    from cartlib.web import metrics
    from cartlib.web.http_limits import LimitedHttpProtocol
    from cartlib.web.logs import logging_config

    settings = get_settings()
    metrics.use_multiprocess_dir(settings.prometheus_multiproc_dir, workers=1)
    uvicorn.run(
        "inventory.app:create_app",
        factory=True,
        host=settings.host,
        port=settings.port or 8001,
        loop="uvloop",
        http=LimitedHttpProtocol if protocol == "limited" else protocol,
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


def measure(rounds: int, seconds: float) -> dict[str, Any]:
    run_dir = RUNS / f"http-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack: Stack = start_stack(run_dir, data.write_catalog(run_dir / "catalog.json"))
    try:
        for protocol in PROTOCOLS:
            port = free_port()
            argv = [sys.executable, "-m", "bench.http_protocols", "--serve", protocol]
            # The service's environment, with bench/ importable for the child's --serve.
            child_env = dict(stack.service_env(port, 1), PYTHONPATH=str(REPO))
            stack._start(protocol, argv, child_env, port, 1)
            print(f"bench.http: {protocol} ready at {stack[protocol].url}", flush=True)
        client = redis.Redis.from_url(stack.redis_url)
        carts = data.make_carts(
            client, stack.token_secret, run_dir / "data", "http", carts=CARTS, lines=LINES
        )
        env = {
            "BENCH_TOKENS": str(carts.tokens_file),
            "BENCH_ITEMS": str(carts.items_file),
            "BENCH_LINES": str(carts.lines),
        }
        for protocol in PROTOCOLS:  # warm-up
            run_wrk(
                stack[protocol].url,
                "add_to_cart.lua",
                connections=CONNECTIONS,
                duration_s=2,
                threads=1,
                env=env,
            )
        results: list[dict[str, Any]] = []
        for index in range(rounds):
            order = PROTOCOLS[index % 3 :] + PROTOCOLS[: index % 3]
            row: dict[str, Any] = {}
            for protocol in order:
                pid = stack[protocol].pid
                before = cpu_seconds(pid)
                result = run_wrk(
                    stack[protocol].url,
                    "add_to_cart.lua",
                    connections=CONNECTIONS,
                    duration_s=seconds,
                    threads=1,
                    env=env,
                )
                cpu = cpu_seconds(pid) - before
                if result.errors_total:
                    raise SystemExit(f"{protocol}: wrk errors {result.errors}")
                row[protocol] = {
                    "requests": result.requests,
                    "rps": result.rps,
                    "cpu_us_per_request": cpu / result.requests * 1e6,
                }
            results.append(row)
            summary = ", ".join(
                f"{p} {row[p]['cpu_us_per_request']:.0f} us {row[p]['rps']:.0f}/s"
                for p in PROTOCOLS
            )
            print(f"bench.http: round {index + 1}: {summary}", flush=True)
        out = {"rounds": results, "connections": CONNECTIONS, "seconds": seconds}
        (run_dir.parent / f"{run_dir.name}.json").write_text(json.dumps(out, indent=2))
        return out
    finally:
        stack.stop()


def report(out: dict[str, Any]) -> None:
    rounds = out["rounds"]
    print(f"{'protocol':<10} {'CPU us/req':>10} {'vs httptools':>13} {'req/s':>7} {'vs':>6}")
    for protocol in PROTOCOLS:
        cpu = statistics.median(r[protocol]["cpu_us_per_request"] for r in rounds)
        rps = statistics.median(r[protocol]["rps"] for r in rounds)
        cpu_ratio = statistics.median(
            r[protocol]["cpu_us_per_request"] / r["httptools"]["cpu_us_per_request"] for r in rounds
        )
        rps_ratio = statistics.median(r[protocol]["rps"] / r["httptools"]["rps"] for r in rounds)
        print(f"{protocol:<10} {cpu:>10.0f} {cpu_ratio:>13.3f} {rps:>7.0f} {rps_ratio:>6.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.http_protocols")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--serve", choices=PROTOCOLS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return 0
    try:
        report(measure(args.rounds, args.seconds))
    except WrkError as exc:
        print(f"bench.http: error: {exc}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
