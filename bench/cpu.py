"""Service CPU per request, in-process, side by side across git revisions.

    python -m bench.cpu [REV ...] [--scenario add|get] [--rounds 11] [--requests 2000]

Each REV (default: `HEAD` and `.`, the working tree with its uncommitted changes) is checked
out with `git worktree add --detach` under `.run/bench/cpu-<date>/`, and measured by a worker
process of its own (bench/cpu_worker.py) whose `inventory` and `cartlib` come from that tree.
A worker builds `inventory.app:create_app()`, runs its lifespan against a private Redis (one for
the whole run, a REDIS_KEY_PREFIX per worker), opens sessions with `POST /sessions`, fills their
carts, warms up, and then, when told to, sends a round of requests straight to the ASGI app and
reports the CPU time of its process per request (`time.process_time()`). The workers take turns,
one at a time, round after round (each round starting with the next worker), so that a burst of
load from elsewhere on the machine skews one round of every revision rather than one revision.

What it measures: the app, cartlib and the redis-py client (and the event loop under them), not
an HTTP server: no uvicorn, no sockets to a client. CPU time leaves out the time spent waiting
(for Redis, for a core), so it is steadier than throughput; but on this shared VM, bursts of
load from elsewhere still double the CPU time per request for seconds at a time.

Prints the median and fastest round per revision and its ratio to the first revision: the
median over rounds of each round's figure over the first revision's in the same round (the
two ran within a second of each other, so a burst that slows both cancels out), with the
quartiles of those ratios as a measure of the noise. Writes every round to
`.run/bench/cpu-<date>.json` (or `--out`). The worktrees are removed at the end, also on an
error, Ctrl-C or SIGTERM; the workers' logs stay in the run's folder.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis

from bench import REPO, data, report
from bench.cpu_worker import SCENARIOS, WorkerConfig
from bench.run import RUNS
from bench.stack import Stack, start_stack
from devstack.processes import Child, StartupError, describe_exit, stop_children
from devstack.services import tail

WORKER_SCRIPT = Path(__file__).resolve().with_name("cpu_worker.py")
WORKING_TREE = "."
SESSIONS = 50
CART_LINES = 5
# Enough for the verified-token cache, the Lua scripts and the interpreter's caches to settle.
WARMUP_REQUESTS = 1000
# Setup (imports, lifespan, sessions, warm-up) takes a few seconds; a round of 2,000 requests
# well under one. Far beyond either: a worker this slow is stuck.
SETUP_TIMEOUT_S = 120.0
ROUND_TIMEOUT_S = 300.0
WORKER_STOP_TIMEOUT = 10.0
# The most units a line may reach: every add of a run lands on one of SESSIONS x CART_LINES
# lines, and the default cap (99) would refuse them after ~25,000 adds.
MAX_QUANTITY = 1_000_000


def say(message: str) -> None:
    print(f"bench.cpu: {message}", flush=True)


class CpuBenchError(Exception):
    """The comparison cannot be made; the message says why."""


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


# --------------------------------------------------------------------------- revisions


@dataclass(frozen=True)
class Revision:
    rev: str  # as given on the command line
    sha: str  # the commit (HEAD's for the working tree)
    subject: str
    dirty: bool  # the working tree, with uncommitted changes to the measured code

    @property
    def label(self) -> str:
        return self.sha[:7] + ("+changes" if self.dirty else "")


def git(*args: str) -> str:
    completed = subprocess.run(
        ["git", "-C", str(REPO), *args], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise CpuBenchError(f"git {' '.join(args)}: {completed.stderr.strip()}")
    return completed.stdout.strip()


def resolve(rev: str) -> Revision:
    commit = "HEAD" if rev == WORKING_TREE else rev
    sha = git("rev-parse", "--verify", "--end-of-options", f"{commit}^{{commit}}")
    subject = git("log", "-1", "--format=%s", sha)
    dirty = rev == WORKING_TREE and bool(
        git("status", "--porcelain", "--", "cartlib", "inventory", "pyproject.toml")
    )
    return Revision(rev, sha, subject, dirty)


def worktree_name(index: int, rev: str) -> str:
    """A folder name for the rev (`HEAD~3` -> `1-HEAD_3`); the index keeps repeats apart."""
    name = "working-tree" if rev == WORKING_TREE else re.sub(r"[^A-Za-z0-9._-]", "_", rev)
    return f"{index}-{name}"


@contextmanager
def worktrees(revisions: Sequence[Revision], parent: Path) -> Iterator[list[Path]]:
    """The tree each revision is imported from: a detached worktree of its commit, or the
    repository itself for the working tree; the worktrees are removed on the way out."""
    created: list[Path] = []
    try:
        roots = []
        for index, revision in enumerate(revisions, 1):
            if revision.rev == WORKING_TREE:
                roots.append(REPO)
                continue
            path = parent / worktree_name(index, revision.rev)
            created.append(path)
            git("worktree", "add", "--detach", "--quiet", str(path), revision.sha)
            roots.append(path)
        yield roots
    finally:
        for path in created:
            remove_worktree(path)


def remove_worktree(path: Path) -> None:
    try:
        git("worktree", "remove", "--force", str(path))
    except CpuBenchError:
        # Interrupted half-way through `worktree add`, or removed by hand: delete what is
        # left and let git forget worktrees whose folder is gone.
        shutil.rmtree(path, ignore_errors=True)
        with suppress(CpuBenchError):
            git("worktree", "prune")


# --------------------------------------------------------------------------- workers


@dataclass
class Worker:
    """A worker process and what it measured. It is spoken to in lock step (one command,
    one reply line), so its stdout never holds more than the line being waited for."""

    revision: Revision
    root: Path
    child: Child
    log: Path
    imported: dict[str, str] = field(default_factory=dict)
    cpu_us: list[float] = field(default_factory=list)
    wall_us: list[float] = field(default_factory=list)

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.child.proc

    def send(self, command: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        self.proc.stdin.flush()

    def receive(self, timeout: float) -> dict[str, Any]:
        """The worker's next reply; a failure, its death or silence past `timeout` raises."""
        replies = self.proc.stdout
        assert replies is not None
        readable, _, _ = select.select([replies], [], [], timeout)
        line = replies.readline() if readable else b""
        message: dict[str, Any] = json.loads(line) if line else {}
        if message and "error" not in message:
            return message
        if "error" in message:
            problem = message["error"]
        elif readable:
            problem = f"it {describe_exit(self.proc.wait(timeout=5))}"
        else:
            problem = f"no answer in {timeout:.0f} s"
        raise CpuBenchError(
            f"worker for {self.revision.rev}: {problem}; its log: {self.log}\n{tail(self.log)}"
        )


def worker_env(stack: Stack, root: Path, key_prefix: str) -> dict[str, str]:
    """The services' benchmark settings (bench/stack.py: generated secret, private Redis,
    LOG_LEVEL=warning, ...), with `root` first on the import path, keys of the worker's own
    in the shared Redis, and no cap on a line's units that a run could reach."""
    env = stack.service_env(port=1, workers=1)
    del env["HOST"], env["PORT"]  # nothing listens: the app is called directly
    env.update(
        PYTHONPATH=str(root),
        REDIS_KEY_PREFIX=key_prefix,
        CART_MAX_QUANTITY=str(MAX_QUANTITY),
    )
    return env


def start_worker(
    stack: Stack, revision: Revision, root: Path, index: int, config: WorkerConfig
) -> Worker:
    log = stack.run_dir / f"worker-{worktree_name(index, revision.rev)}.log"
    own_config = config.copy()
    own_config["expected_root"] = str(root)
    # -P: the script's folder (bench/) is not put first on sys.path, and PYTHONPATH (the
    # revision's tree) comes before the editable install of the working tree (a .pth entry,
    # appended by site). The worker checks where `inventory` and `cartlib` came from.
    argv = [sys.executable, "-P", str(WORKER_SCRIPT), json.dumps(own_config)]
    with log.open("ab") as output:
        try:
            proc = subprocess.Popen(
                argv,
                env=worker_env(stack, root, key_prefix=f"cpu{index}:"),
                cwd=stack.run_dir,  # away from any .env of the repository
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=output,
                # Its own process group: Ctrl-C reaches only this process, which then stops
                # the workers (a worker whose stdin closes also ends by itself).
                start_new_session=True,
            )
        except OSError as exc:
            raise StartupError(f"cannot start the worker for {revision.rev}: {exc}") from exc
    return Worker(revision, root, Child(f"worker {revision.rev}", proc), log)


# --------------------------------------------------------------------------- measurement


@dataclass(frozen=True)
class Placement:
    """Which CPUs the workers and Redis run on; empty: wherever the scheduler puts them."""

    worker_cpus: frozenset[int] = frozenset()
    redis_cpus: frozenset[int] = frozenset()

    @classmethod
    def choose(cls, pin: bool) -> Placement:
        """Every worker on the same CPU, the last one, and Redis on the others. On this VM
        the two vCPUs are not equally fast from one second to the next (whatever else runs on
        the host): two workers of the same revision differed by 7-9% unpinned, by 0-5% pinned
        (median of 41 paired rounds; bench/README.md)."""
        usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
        if not pin or len(usable) < 2:
            return cls()
        return cls(frozenset(usable[-1:]), frozenset(usable[:-1]))

    def apply(self, pid: int, cpus: frozenset[int]) -> None:
        if cpus:
            os.sched_setaffinity(pid, cpus)


@dataclass(frozen=True)
class Options:
    revs: list[str]
    scenario: str
    rounds: int
    requests: int
    loop: str
    pin: bool
    out: Path | None


def measure(options: Options) -> dict[str, Any]:
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    revisions = [resolve(rev) for rev in options.revs]  # a bad rev fails before anything starts
    run_dir = RUNS / f"cpu-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"logs and worktrees in {run_dir}")
    catalog = data.write_catalog(run_dir / "catalog.json", count=CART_LINES)
    config = WorkerConfig(
        scenario=options.scenario,
        loop=options.loop,
        expected_root="",
        item_ids=data.item_ids(CART_LINES),
        sessions=SESSIONS,
        warmup_requests=WARMUP_REQUESTS,
    )
    load_at_start = os.getloadavg()[0]
    placement = Placement.choose(options.pin)
    stack = start_stack(run_dir, catalog)
    try:
        say(f"started {stack.redis_description} at {stack.redis_url}")
        if stack.redis_child is not None:
            placement.apply(stack.redis_child.pid, placement.redis_cpus)
        with worktrees(revisions, run_dir) as roots:
            workers: list[Worker] = []
            try:  # the workers stop before their worktrees go
                for index, (revision, root) in enumerate(zip(revisions, roots, strict=True), 1):
                    worker = start_worker(stack, revision, root, index, config)
                    workers.append(worker)
                    placement.apply(worker.proc.pid, placement.worker_cpus)
                for worker in workers:
                    worker.imported = worker.receive(SETUP_TIMEOUT_S)["imported"]
                    say(f"{worker.revision.rev} ({worker.revision.label}): {worker.imported}")
                run_rounds(workers, options)
            finally:
                stop_workers(workers)
        with redis.Redis.from_url(stack.redis_url) as client:
            redis_info = client.info("server")
    finally:
        stack.stop()
    return result_record(
        options, stamp, started, load_at_start, stack, redis_info, placement, workers
    )


def run_rounds(workers: Sequence[Worker], options: Options) -> None:
    """Round after round, each worker in turn; each round starts with the next worker, so
    that no revision always runs right after another one (or right after an idle spell)."""
    for round_index in range(options.rounds):
        first = round_index % len(workers)
        for worker in [*workers[first:], *workers[:first]]:
            worker.send({"requests": options.requests})
            reply = worker.receive(ROUND_TIMEOUT_S)
            worker.cpu_us.append(reply["cpu_us"])
            worker.wall_us.append(reply["wall_us"])
        figures = ", ".join(f"{w.revision.rev} {w.cpu_us[-1]:.0f} us" for w in workers)
        say(f"round {round_index + 1}/{options.rounds}: {figures}")


def stop_workers(workers: Sequence[Worker]) -> None:
    """End of input ends a worker, after its lifespan's shutdown (closing its Redis client);
    one that does not end in time is stopped like the harness's servers."""
    for worker in workers:
        for pipe in (worker.proc.stdin, worker.proc.stdout):
            if pipe is not None:
                with suppress(OSError):
                    pipe.close()
    deadline = time.monotonic() + WORKER_STOP_TIMEOUT
    for worker in workers:
        with suppress(subprocess.TimeoutExpired):
            worker.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    stop_children([w.child for w in workers], WORKER_STOP_TIMEOUT)


def round_ratios(worker: Worker, reference: Worker) -> list[float]:
    """Each round's figure over the reference's in the same round. The two ran one after
    the other, within a second: load from elsewhere that slows both (bursts that double the
    CPU time per request for a few seconds on this shared VM) cancels out of the ratio."""
    return [mine / theirs for mine, theirs in zip(worker.cpu_us, reference.cpu_us, strict=True)]


def revision_record(worker: Worker, reference: Worker) -> dict[str, Any]:
    ratios = round_ratios(worker, reference)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {
        **asdict(worker.revision),
        "label": worker.revision.label,
        "imported": worker.imported,
        "median_cpu_us": statistics.median(worker.cpu_us),
        "min_cpu_us": min(worker.cpu_us),
        "ratio_to_first": statistics.median(ratios),
        "ratio_q1": quartiles[0],
        "ratio_q3": quartiles[2],
        "ratio_of_medians": statistics.median(worker.cpu_us) / statistics.median(reference.cpu_us),
        "median_wall_us": statistics.median(worker.wall_us),
        "cpu_us": worker.cpu_us,
        "wall_us": worker.wall_us,
        "round_ratios": ratios,
    }


def result_record(
    options: Options,
    stamp: str,
    started: datetime,
    load_at_start: float,
    stack: Stack,
    redis_info: dict[str, Any],
    placement: Placement,
    workers: Sequence[Worker],
) -> dict[str, Any]:
    machine = report.machine_facts(redis_info, stack.redis_description, wrk="not used")
    machine["load_average_at_start"] = load_at_start
    machine["load_average_at_end"] = os.getloadavg()[0]
    return {
        "stamp": stamp,
        "started": started.isoformat(),
        "scenario": options.scenario,
        "method_path": " ".join(SCENARIOS[options.scenario][:2]),
        "rounds": options.rounds,
        "requests_per_round": options.requests,
        "event_loop": options.loop,
        "sessions": SESSIONS,
        "cart_lines": CART_LINES,
        "worker_cpus": sorted(placement.worker_cpus),
        "redis_cpus": sorted(placement.redis_cpus),
        "machine": machine,
        "revisions": [revision_record(worker, workers[0]) for worker in workers],
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        [
            revision["rev"],
            revision["label"],
            f"{revision['median_cpu_us']:.1f}",
            f"{revision['min_cpu_us']:.1f}",
            f"{revision['ratio_to_first']:.3f}",
            f"{revision['ratio_q1']:.3f}-{revision['ratio_q3']:.3f}",
            revision["subject"][:50],
        ]
        for revision in result["revisions"]
    ]
    headers = ["rev", "sha", "median us/req", "min us/req", "ratio", "ratio q1-q3", "subject"]
    return report._table(headers, rows, right={2, 3, 4, 5})


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.cpu", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "revs",
        nargs="*",
        default=["HEAD", WORKING_TREE],
        help="git revisions to compare, the first being the reference; `.` is the working "
        "tree (default: HEAD .)",
    )
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="add")
    parser.add_argument("--rounds", type=int, default=11, help="measured rounds per revision")
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument(
        "--loop",
        choices=["uvloop", "asyncio"],
        default="uvloop",
        help="the event loop (default: uvloop, as the services run)",
    )
    parser.add_argument(
        "--no-pin",
        action="store_true",
        help="let the scheduler place the workers and Redis (default: workers on the last "
        "CPU, Redis on the others)",
    )
    parser.add_argument(
        "--out", type=Path, help="the JSON file (default: .run/bench/cpu-<date>.json)"
    )
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 1000 or not 1 <= args.requests <= 1_000_000:
        parser.error("--rounds must be 1..1000 and --requests 1..1,000,000")
    return Options(
        args.revs, args.scenario, args.rounds, args.requests, args.loop, not args.no_pin, args.out
    )


def main(argv: Sequence[str] | None = None) -> int:
    options = parse_args(argv)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _on_signal)
    try:
        result = measure(options)
    except (CpuBenchError, StartupError) as exc:
        print(f"bench.cpu: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Stopped):
        print("bench.cpu: stopped", file=sys.stderr, flush=True)
        return 130
    out = options.out or RUNS / f"cpu-{result['stamp']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print()
    print(
        f"service CPU per request, {result['method_path']} ({options.scenario}), in-process: "
        f"median and fastest of {options.rounds} rounds of {options.requests} requests; "
        "ratio: the median over rounds of a round's figure / the first revision's in the "
        "same round (q1-q3: the middle half of those)"
    )
    print(table(result))
    say(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
