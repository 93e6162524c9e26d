"""`python -m bench.cluster --quick`: add-to-cart and checkout over HTTP against a standalone
Redis and a 6-node cluster (three masters, three replicas) in one run.

Only counts are checked, never a timing: one round trip per cart operation, the stated number
per checkout (2 standalone; 4 on a cluster: docs/redis-cluster.md), both counted by the
services and by the masters, WAIT after steps C and D, and the session keys spread over
every master."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from typing import Any

import pytest

from bench import REPO
from tests._unavailable import unavailable

pytestmark = pytest.mark.timeout(300)

CHECKOUT_SCRIPTS = {
    "standalone": {"script:begin_checkout", "script:complete_checkout"},
    "cluster": {
        "script:saga_begin",
        "script:saga_reserve",
        "script:saga_commit",
        "script:saga_finish",
    },
}
CATALOG_CACHE_TTL_SECONDS = 5  # the services' default: an add may refresh the snapshot once


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if shutil.which("wrk") is None:
        unavailable("wrk is not installed (tools/install-wrk.sh, run by make test, installs it)")
    out_dir = tmp_path_factory.mktemp("cluster-bench")
    completed = subprocess.run(
        [sys.executable, "-m", "bench.cluster", "--quick", "--out-dir", str(out_dir)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    output = completed.stdout + completed.stderr
    if completed.returncode != 0 and "no Redis" in completed.stderr:
        unavailable(completed.stderr.strip().splitlines()[-1])
    assert completed.returncode == 0, output
    (path,) = out_dir.glob("cluster-*.json")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def rounds(result: dict[str, Any], target: str, scenario: str) -> list[dict[str, Any]]:
    return [row[target][scenario] for row in result["rounds"]]


@pytest.mark.parametrize("target", ["standalone", "cluster"])
def test_a_cart_operation_is_one_round_trip(result: dict[str, Any], target: str) -> None:
    for record in rounds(result, target, "add"):
        assert record["served"] > 0 and record["errors_total"] == 0, record
        calls = record["calls_per_request"]
        # Exactly one add script per add served, counted by the service itself.
        assert calls["script:add_item"] == pytest.approx(1.0, abs=1e-9), calls
        # Besides it, in cluster mode only the availability snapshot, read at most once per
        # CATALOG_CACHE_TTL_SECONDS by the process (not per request).
        others = {
            name: n * record["served"] for name, n in calls.items() if name != "script:add_item"
        }
        allowed = {"script:list_items"} if target == "cluster" else set()
        assert set(others) <= allowed, others
        seconds = result["settings"]["seconds_per_round"]
        assert sum(others.values()) <= math.ceil(seconds / CATALOG_CACHE_TTL_SECONDS) + 1
        # And on the servers: one EVALSHA per script the services counted, nothing missed.
        assert sum(m["evalsha"] for m in record["masters"]) == record["client_script_calls"]
        assert all(m["wait"] == 0 for m in record["masters"]), "a cart write never WAITs"


@pytest.mark.parametrize("target", ["standalone", "cluster"])
def test_a_checkout_takes_the_stated_round_trips(result: dict[str, Any], target: str) -> None:
    for record in rounds(result, target, "checkout"):
        served = record["served"]
        assert served > 0 and record["errors_total"] == 0, record
        calls = record["calls_per_request"]
        assert set(calls) == CHECKOUT_SCRIPTS[target], calls
        for name in CHECKOUT_SCRIPTS[target]:
            assert calls[name] == pytest.approx(1.0, abs=1e-9), calls
        stated = len(CHECKOUT_SCRIPTS[target])  # 2 standalone, 4 on a cluster
        assert record["round_trips_per_request"] == pytest.approx(stated, abs=1e-9)
        assert sum(m["evalsha"] for m in record["masters"]) == record["client_script_calls"]
        # REDIS_WAIT_REPLICAS: 1 on a cluster by default (after A, C and D, pipelined with
        # them), 0 standalone.
        waits = sum(m["wait"] for m in record["masters"])
        assert waits == (3 * served if target == "cluster" else 0), (waits, served)


def test_the_cluster_spreads_session_keys_and_scripts_over_every_master(
    result: dict[str, Any],
) -> None:
    masters = result["spread_after_run"]
    assert len(masters) == 3
    carts = sum(master["carts"] for master in masters)
    orders = sum(master["orders"] for master in masters)
    assert carts > 0 and orders > 0
    for master in masters:
        # 1,024 session buckets over three masters: each holds about a third.
        assert master["carts"] > carts / 10, masters
        assert master["orders"] > orders / 10, masters
    assert sum(master["stock_slot"] for master in masters) == 1, "the {stock} slot is one"
    for record in rounds(result, "cluster", "add"):
        scripts = [m["evalsha"] for m in record["masters"]]
        assert all(count > sum(scripts) / 10 for count in scripts), scripts


def test_the_summary_sets_the_targets_side_by_side(result: dict[str, Any]) -> None:
    for scenario in ("add", "checkout"):
        entry = result["summary"][scenario]
        for target in ("standalone", "cluster"):
            assert entry[target]["rps"] > 0 and entry[target]["cpu_us_per_request"] > 0
        assert entry["ratio"]["rps"] > 0 and entry["ratio"]["cpu_us_per_request"] > 0
