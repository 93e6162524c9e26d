"""What a run reports: the machine it ran on, the targets (each met or not), the printed
tables and the PNG chart."""

from __future__ import annotations

import math
import os
import platform
import statistics
import subprocess
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench import REPO

PACKAGES = (
    "fastapi",
    "starlette",
    "pydantic",
    "pydantic-core",
    "uvicorn",
    "uvloop",
    "httptools",
    "redis",
    "hiredis",
    "orjson",
    "pyjwt",
    "prometheus-client",
)
# Files whose uncommitted changes would make the results differ from the git revision's.
_RELEVANT_PATHS = (
    "cartlib",
    "inventory",
    "checkout",
    "bench",
    "pyproject.toml",
    ":(exclude)bench/results",
    ":(exclude)bench/README.md",
)

# Round trips are counted from Redis's read events: connections opened during a run and
# health-check PINGs add a few, and so do the requests still in flight when wrk stops.
ROUND_TRIP_SLACK = 0.01

Record = dict[str, Any]


# --------------------------------------------------------------------------- machine facts


def _git(*args: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(REPO), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    # Not strip(): `status --porcelain` lines start with a meaningful space.
    return out.stdout.rstrip("\n") if out.returncode == 0 else ""


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    return None


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_facts(redis_info: dict[str, Any], redis_description: str, wrk: str) -> Record:
    changed = _git("status", "--porcelain", "--", *_RELEVANT_PATHS).splitlines()
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_model": _cpu_model(),
        "memory_gib": _memory_gib(),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "platform": platform.platform(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": package_versions(),
        "redis_server": {
            "version": redis_info.get("redis_version"),
            "how": redis_description,
            "io_threads": redis_info.get("io_threads_active"),
        },
        "wrk": wrk,
        "git": {
            "revision": _git("rev-parse", "HEAD").strip() or "unknown",
            "branch": _git("rev-parse", "--abbrev-ref", "HEAD").strip() or "unknown",
            "uncommitted_changes": [line[3:] for line in changed],
        },
    }


# --------------------------------------------------------------------------- targets


@dataclass(frozen=True)
class Target:
    name: str
    goal: str
    value: float | None
    met: bool | None  # None: reported only, no threshold
    detail: str = ""

    def shown_value(self) -> str:
        if self.value is None:
            return "n/a"
        if self.name.startswith("errors"):
            return f"{self.value:.0f}"
        return f"{self.value:.3f}" if "round trips" in self.name else f"{self.value:.2f}"

    def verdict(self) -> str:
        if self.met is None:
            return "reported"
        return "met" if self.met else "NOT MET"


def _ratio(numerator: float, denominator: float) -> float | None:
    return numerator / denominator if denominator else None


def paired_ratio(record: Record, floor: Record) -> tuple[float | None, str]:
    """`record`'s req/s over the floor's: the median of the rounds' ratios, each round over
    the floor round measured just before it (a burst of load from elsewhere then moves both
    sides of one ratio, not one side of the headline). Runs whose records lack the rounds
    give the ratio of the medians."""
    rounds, floor_rounds = record.get("rps_rounds"), floor.get("rps_rounds")
    medians = f"medians {record['rps']:.0f} / {floor['rps']:.0f} req/s"
    if not rounds or not floor_rounds or len(rounds) != len(floor_rounds):
        return _ratio(record["rps"], floor["rps"]), medians
    ratios = [ours / theirs for ours, theirs in zip(rounds, floor_rounds, strict=True) if theirs]
    if not ratios:
        return None, medians
    each = ", ".join(f"{ratio:.2f}" for ratio in ratios)
    return statistics.median(ratios), f"median of paired rounds ({each}); {medians}"


def _instrumentation_detail(instrumentation: Record) -> str:
    detail = (
        f"median of rounds: {instrumentation['instrumented_us']:.1f} / "
        f"{instrumentation['bare_us']:.1f} us; fastest rounds: "
        f"{instrumentation['best_ratio']:.3f}"
    )
    # Runs before the paired rounds have neither; their ratio is the ratio of the medians.
    if "cpu_overhead_us" in instrumentation:
        detail = (
            "median of paired rounds; "
            + detail
            + f"; CPU added per call {instrumentation['cpu_overhead_us']:.1f} us"
        )
    return detail


def evaluate(scenarios: dict[str, Record], instrumentation: Record) -> list[Target]:
    floor, small, big = scenarios["floor"], scenarios["add_small"], scenarios["add_big"]
    checkout, two = scenarios["checkout"], scenarios["add_small_2w"]
    targets = []

    value, detail = paired_ratio(small, floor)
    targets.append(
        Target(
            "add-to-cart rps / floor rps (32 conns, 1 worker)",
            ">= 0.75",
            value,
            value is not None and value >= 0.75,
            detail,
        )
    )
    value = _ratio(big["rps"], small["rps"])
    targets.append(
        Target(
            "500-line cart add rps / small cart add rps",
            ">= 0.90",
            value,
            value is not None and value >= 0.9,
            f"{big['rps']:.0f} / {small['rps']:.0f} req/s",
        )
    )
    cart_ops = {name: scenarios[name] for name in ("add_small", "add_big", "get_cart")}
    worst = max(cart_ops, key=lambda name: cart_ops[name]["redis"]["round_trips_per_request"])
    value = cart_ops[worst]["redis"]["round_trips_per_request"]
    targets.append(
        Target(
            "Redis round trips per cart operation",
            "1",
            value,
            value <= 1 + ROUND_TRIP_SLACK,
            f"worst: {worst}; "
            + ", ".join(
                f"{name} {op['redis']['round_trips_per_request']:.3f}"
                for name, op in cart_ops.items()
            ),
        )
    )
    value = checkout["redis"]["round_trips_per_request"]
    targets.append(
        Target(
            "Redis round trips per checkout",
            "<= 3",
            value,
            value <= 3 + ROUND_TRIP_SLACK,
            f"{checkout['redis']['script_calls_per_request']:.3f} script calls",
        )
    )
    tails = {
        name: record["latency_ms"]["p99"] / record["latency_ms"]["p50"]
        for name, record in scenarios.items()
        if record["connections"] == 32 and record["server"] != "floor"
        if record["latency_ms"]["p50"] > 0
    }
    one_worker = {name: tail for name, tail in tails.items() if scenarios[name]["workers"] == 1}
    worst = max(one_worker, key=one_worker.__getitem__)
    targets.append(
        Target(
            "p99 / p50 at 32 connections, 1 worker (worst scenario)",
            "<= 4",
            one_worker[worst],
            one_worker[worst] <= 4,
            f"worst: {worst}; " + ", ".join(f"{n} {v:.2f}" for n, v in tails.items()),
        )
    )
    value = instrumentation["ratio"]
    targets.append(
        Target(
            "instrumented / bare Redis call (cartlib)",
            "<= 1.10",
            value,
            value <= 1.1,
            _instrumentation_detail(instrumentation),
        )
    )
    value = _ratio(two["rps"], small["rps"])
    targets.append(
        Target(
            "two workers / one worker, add-to-cart rps",
            "report",
            value,
            None,
            f"{two['rps']:.0f} / {small['rps']:.0f} req/s; wrk and Redis share the 2 cores",
        )
    )
    errors = {name: record["errors_total"] for name, record in scenarios.items()}
    total = sum(errors.values())
    targets.append(
        Target(
            "errors (non-2xx/3xx, socket) in all scenarios",
            "0",
            float(total),
            total == 0,
            ", ".join(f"{n} {v}" for n, v in errors.items() if v) or "none",
        )
    )
    return targets


def targets_json(targets: list[Target]) -> list[Record]:
    return [asdict(target) for target in targets]


# --------------------------------------------------------------------------- tables


def _table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(cells)
        ).rstrip()

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def scenario_table(scenarios: dict[str, Record]) -> str:
    headers = ["scenario", "conns", "workers", "req/s", "p50 ms", "p99 ms", "p99/p50"]
    headers += ["errors", "round trips", "commands", "redis cpu us"]
    rows = []
    for name, r in scenarios.items():
        lat = r["latency_ms"]
        rows.append(
            [
                name,
                str(r["connections"]),
                str(r["workers"]),
                f"{r['rps']:.0f}",
                f"{lat['p50']:.2f}",
                f"{lat['p99']:.2f}",
                f"{lat['p99'] / lat['p50']:.2f}" if lat["p50"] else "n/a",
                str(r["errors_total"]),
                f"{r['redis']['round_trips_per_request']:.3f}",
                f"{r['redis']['commands_per_request']:.2f}",
                f"{r['redis'].get('cpu_us_per_request', 0):.0f}",
            ]
        )
    return _table(headers, rows, right=set(range(1, len(headers))))


def targets_table(targets: list[Target]) -> str:
    rows = [[t.name, t.goal, t.shown_value(), t.verdict(), t.detail] for t in targets]
    return _table(["target", "goal", "measured", "", "detail"], rows, right={1, 2})


def markdown_targets(targets: list[Target]) -> str:
    lines = ["| target | goal | measured | | detail |", "|---|---|---|---|---|"]
    for t in targets:
        lines.append(f"| {t.name} | {t.goal} | {t.shown_value()} | {t.verdict()} | {t.detail} |")
    return "\n".join(lines)


def markdown_scenarios(scenarios: dict[str, Record]) -> str:
    lines = [
        "| scenario | conns | workers | req/s | p50 ms | p99 ms | errors "
        "| round trips | commands | Redis CPU µs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in scenarios.items():
        lat = r["latency_ms"]
        lines.append(
            f"| {name} | {r['connections']} | {r['workers']} | {r['rps']:.0f} | "
            f"{lat['p50']:.2f} | {lat['p99']:.2f} | {r['errors_total']} | "
            f"{r['redis']['round_trips_per_request']:.3f} | "
            f"{r['redis']['commands_per_request']:.2f} | "
            f"{r['redis'].get('cpu_us_per_request', 0):.0f} |"
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------- chart


def write_chart(result: Record, path: Path) -> None:
    """Three panels: req/s at 32 connections against the floor, the concurrency sweep, and
    the latency percentiles at 32 connections."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scenarios: dict[str, Record] = result["scenarios"]
    figure, (bars, sweep, tails) = plt.subplots(1, 3, figsize=(17, 5.2))

    at32 = [name for name, r in scenarios.items() if r["connections"] == 32]
    floor_rps = scenarios["floor"]["rps"]
    values = [scenarios[name]["rps"] for name in at32]
    colours = ["#888888" if name == "floor" else "#3b75af" for name in at32]
    positions = range(len(at32))
    bars.barh(list(positions), values, color=colours)
    bars.set_yticks(list(positions), at32)
    bars.invert_yaxis()
    for position, value in zip(positions, values, strict=True):
        bars.text(value, position, f" {value:.0f} ({value / floor_rps:.2f}x floor)", va="center")
    bars.set_xlim(0, max(values) * 1.45)
    bars.set_xlabel("requests/s")
    bars.set_title("32 connections")

    points = sorted(result["sweep"], key=lambda point: point["connections"])
    connections = [point["connections"] for point in points]
    records = [scenarios[point["scenario"]] for point in points]
    sweep.plot(connections, [r["rps"] for r in records], "o-", color="#3b75af", label="req/s")
    sweep.set_xscale("log", base=2)
    sweep.set_xticks(connections, [str(c) for c in connections])
    sweep.set_xlabel("connections (add-to-cart, small carts, 1 worker)")
    sweep.set_ylabel("requests/s")
    sweep.set_ylim(bottom=0)
    sweep.set_title("concurrency sweep")
    latency = sweep.twinx()
    p50 = [r["latency_ms"]["p50"] for r in records]
    p99 = [r["latency_ms"]["p99"] for r in records]
    latency.plot(connections, p50, "s--", color="#d9822b", label="p50 ms")
    latency.plot(connections, p99, "^--", color="#c23b22", label="p99 ms")
    latency.set_yscale("log")
    latency.set_ylabel("latency ms")
    handles = sweep.get_legend_handles_labels()[0] + latency.get_legend_handles_labels()[0]
    sweep.legend(handles=handles, loc="upper left", fontsize="small")

    for name in at32:
        quantiles = scenarios[name]["latency_percentiles_ms"]
        xs = [-math.log10(1 - q / 100) for q, _ in quantiles]
        tails.plot(xs, [ms for _, ms in quantiles], marker=".", label=name)
    ticks = [50, 90, 99, 99.9, 99.99]
    tails.set_xticks([-math.log10(1 - q / 100) for q in ticks], [f"p{q:g}" for q in ticks])
    tails.set_yscale("log")
    tails.set_ylabel("latency ms")
    tails.set_title("latency percentiles, 32 connections")
    tails.legend(fontsize="small")
    tails.grid(True, which="both", alpha=0.3)

    machine = result["machine"]
    figure.suptitle(
        f"storefront bench {result['started_at'][:19]}  {result['mode']}  "
        f"git {machine['git']['revision'][:10]}  {machine['cpu_count']} CPUs  "
        f"{machine['python']}  Redis {machine['redis_server']['version']}"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    """`python -m bench.report [RESULT.json]`: the tables of a run (default: the newest in
    bench/results) as Markdown, for bench/README.md; `--chart` redraws its PNG."""
    import argparse
    import json

    parser = argparse.ArgumentParser(prog="python -m bench.report", description=main.__doc__)
    parser.add_argument("result", nargs="?", type=Path)
    parser.add_argument("--chart", action="store_true", help="redraw the PNG beside the JSON")
    args = parser.parse_args(argv)
    path: Path | None = args.result
    if path is None:
        runs = sorted((REPO / "bench" / "results").glob("20*.json"))
        if not runs:
            parser.error("no results in bench/results: run make bench")
        path = runs[-1]
    result = json.loads(path.read_text())
    scenarios = result["scenarios"]
    targets = [Target(**target) for target in result["targets"]]
    machine = result["machine"]
    print(
        f"{path.name}: {result['mode']} run, git {machine['git']['revision'][:10]}, "
        f"{machine['cpu_count']} CPUs ({machine['cpu_model']}), {machine['python']}, "
        f"Redis {machine['redis_server']['version']}, load average at start "
        f"{machine['load_average_at_start'][0]:.2f}\n"
    )
    print(markdown_targets(targets))
    print()
    print(markdown_scenarios(scenarios))
    if args.chart:
        write_chart(result, path.with_suffix(".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
