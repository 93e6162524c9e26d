"""redis.architecture=cluster on a real cluster: six Redis pods (all at once, a claim each)
formed into a Redis Cluster by the create Job, `helm test` and the shop flow through the
services (REDIS_CLUSTER_NODES), a master pod deleted: it comes back under its node id with
a new IP and the cluster serves every slot again; `helm upgrade`: the next revision's Job
finds the cluster and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster._kube import (
    CHART_DIR,
    Namespace,
    helm,
    kubectl,
    kubectl_json,
    pod_ready,
    run_shopper,
    wait_until,
)

RELEASE = "shop"
FULLNAME = f"{RELEASE}-storefront"
INVENTORY = f"http://{FULLNAME}-inventory:8001"
CHECKOUT = f"http://{FULLNAME}-checkout:8002"
REDIS = f"{FULLNAME}-redis"
JOB = f"{REDIS}-cluster-init"
NODES = 6


@pytest.fixture(scope="module")
def cluster_release(images: dict[str, str]) -> Iterator[Namespace]:  # noqa: ARG001
    namespace = Namespace.create("sf-cluster")
    try:
        helm(
            "install", RELEASE, CHART_DIR, "-n", namespace.name,
            "--set", "redis.architecture=cluster",
            # Six Redis pods and the services on one small node.
            "--set", "redis.resources.requests.cpu=50m",
            "--set", "inventory.replicaCount=1",
            "--set", "checkout.replicaCount=1",
            "--wait", "--timeout", "8m",
            timeout=600,
        )  # fmt: skip
        yield namespace
    finally:
        helm("uninstall", RELEASE, "-n", namespace.name, "--wait", "--timeout", "2m", check=False)
        namespace.delete()


def cli(namespace: Namespace, pod: str, *command: str, check: bool = True) -> str:
    """redis-cli in a Redis pod (REDISCLI_AUTH is in the container's environment); with
    `check` false, "" when the pod cannot be reached."""
    args = ("exec", pod, "-n", namespace.name, "--", "redis-cli", *command)
    return kubectl(*args, check=check, timeout=30)


def cluster_info(namespace: Namespace, pod: str, check: bool = True) -> dict[str, str]:
    lines = cli(namespace, pod, "CLUSTER", "INFO", check=check).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def topology(namespace: Namespace, pod: str) -> dict[str, tuple[str, str]]:
    """{node id: (role, slots)} as `pod` sees the cluster."""
    nodes = {}
    for line in cli(namespace, pod, "CLUSTER", "NODES").splitlines():
        fields = line.split()
        role = "master" if "master" in fields[2] else "replica"
        nodes[fields[0]] = (role, " ".join(fields[8:]))
    return nodes


def replication(namespace: Namespace, pod: str) -> dict[str, str]:
    lines = cli(namespace, pod, "INFO", "replication", check=False).splitlines()
    return dict(line.strip().split(":", 1) for line in lines if ":" in line)


def healthy(namespace: Namespace) -> bool:
    """Every pod Ready (cluster_state:ok); every node: all slots ok, six nodes, three
    masters; every replica in sync with its master. A paid checkout waits for a replica's
    acknowledgement (WAIT), so a master whose returning replica still loads the full sync
    answers 503 "not yet stored safely": the cluster is not yet healthy for the shop."""
    pods = namespace.pods("app.kubernetes.io/component=redis")
    if len(pods) != NODES or not all(pod_ready(p) for p in pods):
        return False
    for ordinal in range(NODES):
        pod = f"{REDIS}-{ordinal}"
        info = cluster_info(namespace, pod, check=False)
        if (info.get("cluster_state"), info.get("cluster_slots_ok")) != ("ok", "16384"):
            return False
        if (info.get("cluster_known_nodes"), info.get("cluster_size")) != (str(NODES), "3"):
            return False
        role = replication(namespace, pod)
        if role.get("role") == "master" and role.get("connected_slaves") != "1":
            return False
        in_sync = (role.get("master_link_status"), role.get("master_sync_in_progress"))
        if role.get("role") == "slave" and in_sync != ("up", "0"):
            return False
    return True


def job_log(namespace: Namespace, revision: int) -> str:
    name = f"{JOB}-{revision}"
    kubectl("wait", "--for=condition=complete", f"job/{name}", "-n", namespace.name,
            "--timeout=300s", timeout=320)  # fmt: skip
    return kubectl("logs", f"job/{name}", "-n", namespace.name)


def test_six_pods_form_the_cluster_once(cluster_release: Namespace) -> None:
    namespace = cluster_release
    pods = namespace.pods("app.kubernetes.io/component=redis")
    assert sorted(p["metadata"]["name"] for p in pods) == [f"{REDIS}-{i}" for i in range(NODES)]
    claims = kubectl_json("get", "pvc", "-n", namespace.name)["items"]
    assert sorted(c["metadata"]["name"] for c in claims) == [
        f"data-{REDIS}-{i}" for i in range(NODES)
    ]
    assert all(c["status"]["phase"] == "Bound" for c in claims)
    assert "every node is empty: creating the cluster" in job_log(namespace, 1)
    wait_until("the cluster is healthy", lambda: healthy(namespace), seconds=120, interval=2)
    # Clients are sent the pods' DNS names.
    shards = cli(namespace, f"{REDIS}-0", "CLUSTER", "SHARDS")
    assert all(f"{REDIS}-{i}.{REDIS}-headless.{namespace.name}.svc" in shards for i in range(6))


def test_helm_test_and_the_shop_flow(cluster_release: Namespace, images: dict[str, str]) -> None:
    result = helm("test", RELEASE, "-n", cluster_release.name, "--timeout", "3m", "--logs")
    assert "Succeeded" in result.stdout, result.stdout
    report = run_shopper(
        cluster_release.name, FULLNAME, images["checkout"],
        ["flow", "--inventory", INVENTORY, "--checkout", CHECKOUT], seconds=120,
    )  # fmt: skip
    assert report["ok"], report
    assert report["order_id"]


def test_a_master_pod_deleted_rejoins_with_its_node_id(
    cluster_release: Namespace, images: dict[str, str]
) -> None:
    namespace = cluster_release
    wait_until("the cluster is healthy", lambda: healthy(namespace), seconds=120, interval=2)
    victim = next(
        f"{REDIS}-{i}"
        for i in range(1, NODES)
        if cli(namespace, f"{REDIS}-{i}", "ROLE").splitlines()[0] == "master"
    )
    node_id = cli(namespace, victim, "CLUSTER", "MYID").strip()
    old_ip = kubectl_json("get", "pod", victim, "-n", namespace.name)["status"]["podIP"]
    kubectl("delete", "pod", victim, "-n", namespace.name, "--wait=true", timeout=120)
    wait_until("back, and the cluster healthy", lambda: healthy(namespace), seconds=240, interval=3)
    assert cli(namespace, victim, "CLUSTER", "MYID").strip() == node_id  # its nodes.conf
    new_ip = kubectl_json("get", "pod", victim, "-n", namespace.name)["status"]["podIP"]
    seen = next(
        line.split()[1]
        for line in cli(namespace, f"{REDIS}-0", "CLUSTER", "NODES").splitlines()
        if line.startswith(node_id)
    )
    assert seen.startswith(f"{new_ip}:6379@16379,{victim}."), (old_ip, new_ip, seen)
    report = run_shopper(
        namespace.name, FULLNAME, images["checkout"],
        ["flow", "--inventory", INVENTORY, "--checkout", CHECKOUT], seconds=120,
    )  # fmt: skip
    assert report["ok"], report


def test_upgrade_runs_the_job_again_and_changes_nothing(cluster_release: Namespace) -> None:
    namespace = cluster_release
    wait_until("the cluster is healthy", lambda: healthy(namespace), seconds=120, interval=2)
    shape = topology(namespace, f"{REDIS}-0")
    epoch = cluster_info(namespace, f"{REDIS}-0")["cluster_current_epoch"]
    helm(
        "upgrade", RELEASE, CHART_DIR, "-n", namespace.name, "--reuse-values",
        "--set", "redis.cluster.init.backoffLimit=5", "--wait", "--timeout", "5m",
        timeout=360,
    )  # fmt: skip
    log = job_log(namespace, 2)
    assert "a cluster exists" in log and "creating the cluster" not in log, log
    jobs = [
        j["metadata"]["name"] for j in kubectl_json("get", "jobs", "-n", namespace.name)["items"]
    ]
    assert jobs == [f"{JOB}-2"]  # Helm removed revision 1's
    assert topology(namespace, f"{REDIS}-0") == shape
    assert cluster_info(namespace, f"{REDIS}-0")["cluster_current_epoch"] == epoch
    assert healthy(namespace)
