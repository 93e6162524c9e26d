"""Where the time goes: py-spy samples the inventory service while wrk drives add-to-cart.

    python -m bench.profile [--scenario add_small|add_big|get_cart] [--duration 20]

Starts the same stack as the harness (private Redis, services with production settings, one
worker), warms up, then runs wrk at 32 connections while `py-spy record` samples the
inventory process (`--nonblocking` by default, so the service is not paused per sample;
`--blocking` for exact stacks at some cost in throughput). py-spy needs ptrace: root, or
`kernel.yama.ptrace_scope=0`, or CAP_SYS_PTRACE in a container.

The samples (py-spy's collapsed stacks) are summarised two ways:

- by layer: each sample is charged to the innermost frame that belongs to a library or to
  storefront, so standard-library frames count for their caller (base64 under PyJWT is
  PyJWT's; asyncio stream writes under redis-py are redis-py's); samples whose innermost
  work is the event loop itself are "event loop (uvloop, syscalls)";
- by function: the innermost frame (self time), to find hot spots.

Writes `<out>/profile-<date>.json` and `.md` (default out: bench/results) and prints the
tables; the raw stacks stay in the run folder under .run/bench/.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import sysconfig
import threading
import time
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import REPO, data
from bench.run import BIG_LINES, CONNECTIONS, FULL, RESULTS, RUNS, SMALL_LINES, Harness, start
from bench.wrk import WrkError, WrkResult, run_wrk, wrk_binary
from devstack.processes import StartupError

SCENARIOS = {
    "add_small": ("add_to_cart.lua", SMALL_LINES),
    "add_big": ("add_to_cart.lua", BIG_LINES),
    "get_cart": ("get_cart.lua", SMALL_LINES),
}

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>.*):(?P<line>\d+)\)$")
_STDLIB = str(Path(sysconfig.get_paths()["stdlib"]).resolve())
# Frames that drive the event loop (function name without its class, file): a sample whose
# innermost frame is one of these is time spent inside the loop's own (C) code: polling,
# scheduling, transports, syscalls.
_LOOP_DRIVERS = {
    ("run_until_complete", "asyncio/base_events.py"),
    ("run_forever", "asyncio/base_events.py"),
    ("_run_once", "asyncio/base_events.py"),
    ("run", "asyncio/runners.py"),
}
LOOP = "event loop (uvloop, syscalls)"
# (path fragment, layer): the first match names the layer of a frame's file.
_LAYERS = (
    ("/site-packages/fastapi/", "FastAPI (routing, dependencies, handler glue)"),
    ("/site-packages/starlette/", "Starlette (routing, middleware, responses)"),
    ("/site-packages/uvicorn/protocols/http/httptools_impl.py", "uvicorn httptools protocol"),
    ("/site-packages/uvicorn/", "uvicorn (other)"),
    ("/site-packages/redis/", "redis-py (with its asyncio stream I/O)"),
    ("/site-packages/jwt/", "PyJWT"),
    ("/site-packages/pydantic_core/", "pydantic"),
    ("/site-packages/pydantic/", "pydantic"),
    ("/site-packages/prometheus_client/", "prometheus-client"),
    ("/site-packages/anyio/", "anyio"),
    ("/site-packages/uvloop/", LOOP),
    (f"{REPO}/cartlib/web/middleware.py", "cartlib middleware (telemetry, body limit)"),
    (f"{REPO}/cartlib/", "cartlib (deps, stores, redis call, metrics)"),
    (f"{REPO}/inventory/", "inventory handlers"),
    (f"{REPO}/checkout/", "checkout handlers"),
)


def parse_frame(frame: str) -> tuple[str, str]:
    match = _FRAME.match(frame)
    if match is None:
        return frame, ""
    return match["function"], match["file"]


def is_stdlib(path: str) -> bool:
    return path.startswith(_STDLIB) and "/site-packages/" not in path


def layer_of(path: str) -> str | None:
    for fragment, layer in _LAYERS:
        if fragment in path:
            return layer
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1].split("/", 1)[0]
    return None


def short_path(path: str) -> str:
    if "/site-packages/" in path:
        return path.split("/site-packages/", 1)[1]
    if path.startswith(_STDLIB):
        return path[len(_STDLIB) + 1 :]
    if path.startswith(f"{REPO}/"):
        return path[len(str(REPO)) + 1 :]
    return path


def classify(stack: list[tuple[str, str]]) -> str:
    """The layer a sample is charged to; `stack` runs from the root to the innermost frame."""
    boundary = -1  # the innermost frame that drives the loop: callbacks run above it
    for index, (function, path) in enumerate(stack):
        if (function.rpartition(".")[2], short_path(path)) in _LOOP_DRIVERS:
            boundary = index
    if boundary == len(stack) - 1:
        return LOOP
    for _, path in reversed(stack[boundary + 1 :]):
        if not is_stdlib(path):
            layer = layer_of(path)
            if layer is not None:
                return layer
    innermost = short_path(stack[-1][1])
    if innermost.startswith("asyncio/streams.py"):
        return "redis-py (with its asyncio stream I/O)"
    return f"standard library ({innermost.split('/')[0].removesuffix('.py')})"


def summarise(lines: Iterable[str], top: int = 15) -> dict[str, Any]:
    """Shares by layer and by innermost function, from py-spy's raw (collapsed) output."""
    layers: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in lines:
        line = line.strip()
        if not line:
            continue
        stack_text, _, count_text = line.rpartition(" ")
        try:
            count = int(count_text)
        except ValueError:
            continue
        stack = [parse_frame(frame) for frame in stack_text.split(";") if frame]
        if not stack:
            continue
        total += count
        layers[classify(stack)] += count
        function, path = stack[-1]
        functions[f"{function} ({short_path(path)})"] += count
    return {
        "samples": total,
        "by_layer": [
            {"layer": layer, "share": count / total} for layer, count in layers.most_common()
        ],
        "top_functions": [
            {"function": name, "share": count / total} for name, count in functions.most_common(top)
        ],
    }


def markdown(summary: dict[str, Any]) -> str:
    lines = ["| where (by layer) | share |", "|---|---|"]
    lines += [f"| {row['layer']} | {row['share']:.1%} |" for row in summary["by_layer"]]
    lines += ["", "| innermost function (self time) | share |", "|---|---|"]
    lines += [f"| `{row['function']}` | {row['share']:.1%} |" for row in summary["top_functions"]]
    return "\n".join(lines)


def py_spy_binary() -> str:
    beside = Path(sys.executable).parent / "py-spy"
    found = shutil.which("py-spy") or (str(beside) if beside.exists() else None)
    if found is None:
        raise StartupError("py-spy is not installed: make installs the lock's dev group")
    return found


def profile(scenario: str, duration_s: int, rate: int, blocking: bool, out_dir: Path) -> int:
    wrk_binary()
    py_spy = py_spy_binary()
    script, lines = SCENARIOS[scenario]
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    run_dir = RUNS / f"profile-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    stack = start(run_dir, floor=False)
    try:
        harness = Harness(FULL, stack, threads=1)
        carts = harness.carts(
            f"profile-{scenario}", carts=FULL.big_carts if lines > 50 else 5000, lines=lines
        )
        inventory = stack["inventory"]
        env = {
            "BENCH_TOKENS": str(carts.tokens_file),
            "BENCH_ITEMS": str(carts.items_file),
            "BENCH_LINES": str(lines),
        }
        common: dict[str, Any] = {"connections": CONNECTIONS, "threads": 1, "env": env}
        run_wrk(inventory.url, script, duration_s=3, log=run_dir / "wrk.log", **common)
        results: list[WrkResult] = []
        load = threading.Thread(
            target=lambda: results.append(
                run_wrk(
                    inventory.url,
                    script,
                    duration_s=duration_s + 3,
                    log=run_dir / "wrk.log",
                    **common,
                )
            ),
            daemon=True,
        )
        load.start()
        time.sleep(1)
        raw = run_dir / "py-spy.txt"
        argv = [py_spy, "record", "--pid", str(inventory.pid), "--format", "raw"]
        argv += ["--output", str(raw), "--duration", str(duration_s), "--rate", str(rate)]
        argv += ["--full-filenames"] + ([] if blocking else ["--nonblocking"])
        spy = subprocess.run(argv, capture_output=True, text=True, timeout=duration_s + 60)
        load.join(timeout=duration_s + 60)
        if spy.returncode != 0 or not raw.exists():
            raise StartupError(f"py-spy failed ({spy.returncode}): {spy.stderr.strip()}")
    finally:
        stack.stop()
    summary = summarise(raw.read_text().splitlines())
    result = {
        "started_at": started.isoformat(),
        "scenario": scenario,
        "connections": CONNECTIONS,
        "duration_s": duration_s,
        "rate_hz": rate,
        "py_spy": "blocking" if blocking else "nonblocking",
        "rps_while_profiled": results[0].rps if results else None,
        # Sampled (not idle) time of the service per request: compares scenarios.
        "busy_ms_per_request": (
            summary["samples"] / rate / (results[0].rps * duration_s) * 1000
            if results and results[0].rps
            else None
        ),
        "git_revision": subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
        "catalog_items": data.ITEM_COUNT,
        **summary,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"profile-{stamp}.json").write_text(json.dumps(result, indent=2) + "\n")
    heading = (
        f"py-spy ({result['py_spy']}, {rate} Hz, {duration_s} s), inventory, {scenario} at "
        f"{CONNECTIONS} connections, {summary['samples']} samples, "
        f"{result['rps_while_profiled'] or 0:.0f} req/s while profiled, "
        f"{result['busy_ms_per_request'] or 0:.2f} ms of busy service time per request"
    )
    table = markdown(summary)
    (out_dir / f"profile-{stamp}.md").write_text(f"{heading}\n\n{table}\n")
    print(f"\n{heading}\n\n{table}\n")
    print(f"bench.profile: wrote {out_dir}/profile-{stamp}.json and .md; raw stacks: {raw}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.profile", description="py-spy profile of inventory under load"
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="add_small")
    parser.add_argument("--duration", type=int, default=20, help="seconds sampled")
    parser.add_argument("--rate", type=int, default=250, help="samples per second")
    parser.add_argument("--blocking", action="store_true", help="pause the process per sample")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    args = parser.parse_args()
    try:
        return profile(args.scenario, args.duration, args.rate, args.blocking, args.out_dir)
    except (StartupError, WrkError) as exc:
        print(f"bench.profile: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
