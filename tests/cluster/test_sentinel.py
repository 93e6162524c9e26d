"""redis.architecture=sentinel on a real cluster: three Redis pods (StatefulSet ordering,
headless-Service DNS, a claim each); the master pod deleted: the Sentinels elect another,
the services recover without a restart, and every acknowledged order is still there."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from tests.cluster._kube import (
    CHART_DIR,
    Namespace,
    helm,
    kubectl,
    pod_ready,
    run_shopper,
    shopper_report,
    start_shopper,
    wait_until,
)

RELEASE = "shop"
FULLNAME = f"{RELEASE}-storefront"
INVENTORY = f"http://{FULLNAME}-inventory:8001"
CHECKOUT = f"http://{FULLNAME}-checkout:8002"
REDIS = f"{FULLNAME}-redis"
SERVICE_SELECTOR = "app.kubernetes.io/component in (inventory,checkout)"


@pytest.fixture(scope="module")
def sentinel_release(images: dict[str, str]) -> Iterator[Namespace]:  # noqa: ARG001
    namespace = Namespace.create("sf-sentinel")
    try:
        helm(
            "install",
            RELEASE,
            CHART_DIR,
            "-n",
            namespace.name,
            "--set",
            "redis.architecture=sentinel",
            "--set",
            "redis.sentinel.downAfterMilliseconds=5000",
            "--wait",
            "--timeout",
            "8m",
            timeout=600,
        )
        yield namespace
    finally:
        helm("uninstall", RELEASE, "-n", namespace.name, "--wait", "--timeout", "2m", check=False)
        namespace.delete()


def master_pod(namespace: Namespace, asked: str) -> str:
    """The pod the Sentinel in pod `asked` names as the master ("" when it names none)."""
    answer = kubectl(
        "exec",
        asked,
        "-n",
        namespace.name,
        "-c",
        "sentinel",
        "--",
        "sh",
        "-c",
        'REDISCLI_AUTH="$REDIS_SENTINEL_PASSWORD" redis-cli --raw -p 26379 '
        "SENTINEL get-master-addr-by-name storefront",
        check=False,
        timeout=30,
    ).split()
    return answer[0].split(".")[0] if answer else ""


def restarts(namespace: Namespace) -> dict[str, int]:
    return {
        p["metadata"]["name"]: sum(c["restartCount"] for c in p["status"]["containerStatuses"])
        for p in namespace.pods(SERVICE_SELECTOR)
    }


def test_master_pod_deleted_a_new_master_and_no_order_lost(
    sentinel_release: Namespace, images: dict[str, str]
) -> None:
    namespace = sentinel_release
    redis_pods = namespace.pods("app.kubernetes.io/component=redis")
    assert sorted(p["metadata"]["name"] for p in redis_pods) == [f"{REDIS}-{i}" for i in range(3)]
    assert all(pod_ready(p) for p in redis_pods)
    old_master = wait_until(
        "a master named", lambda: master_pod(namespace, f"{REDIS}-1"), seconds=60
    )
    services_before = restarts(namespace)
    assert len(services_before) == 4, services_before

    start_shopper(
        namespace.name,
        FULLNAME,
        images["checkout"],
        [
            "traffic",
            "--inventory",
            INVENTORY,
            "--checkout",
            CHECKOUT,
            "--seconds",
            "90",
            "--max-flows",
            "1000",
            "--pause",
            "0.2",
        ],
        name="failover-traffic",
    )
    time.sleep(15)
    deleted_at = time.time()
    kubectl("delete", "pod", old_master, "-n", namespace.name, "--wait=false")
    survivor = next(f"{REDIS}-{i}" for i in range(3) if f"{REDIS}-{i}" != old_master)
    new_master = wait_until(
        "the Sentinels name another master",
        lambda: m if (m := master_pod(namespace, survivor)) not in ("", old_master) else "",
        seconds=120,
        interval=2,
    )
    report = shopper_report(namespace.name, "failover-traffic", seconds=180)

    orders = report["orders"]
    assert any(o["at"] < deleted_at for o in orders), "no order before the failover"
    recovered = [o for o in orders if o["at"] > deleted_at + 30]
    assert recovered, f"no order acknowledged after the failover (new master {new_master})"
    assert restarts(namespace) == services_before, "the services restarted"

    verified = run_shopper(
        namespace.name,
        FULLNAME,
        images["checkout"],
        ["verify", "--checkout", CHECKOUT, "--orders", "@/shopper/orders.json"],
        seconds=180,
        name="verify-orders",
        files={"orders.json": json.dumps(orders)},
    )
    assert verified["checked"] == len(orders)
    lost = {m["order_id"] for m in verified["missing"]}
    when = [round(o["at"] - deleted_at, 1) for o in orders if o["order_id"] in lost]
    assert not lost, (
        f"{len(lost)} of {len(orders)} acknowledged orders lost; acknowledged at {when} s from "
        f"the deletion of {old_master} (new master {new_master}): {verified['missing'][:3]}"
    )
    wait_until("the deleted pod is back and Ready", namespace.all_pods_ready, seconds=180)
