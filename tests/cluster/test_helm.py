"""The chart on a real cluster: `helm install` with its defaults in a PodSecurity `restricted`
namespace, `helm test`, the shop flow through the Services from inside the cluster, and a
`helm upgrade` under traffic that keeps the generated secrets."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from tests.cluster._kube import (
    CHART_DIR,
    Namespace,
    helm,
    kubectl,
    kubectl_json,
    run_shopper,
    shopper_report,
    start_shopper,
    wait_until,
)

RELEASE = "shop"
FULLNAME = f"{RELEASE}-storefront"
INVENTORY = f"http://{FULLNAME}-inventory:8001"
CHECKOUT = f"http://{FULLNAME}-checkout:8002"


@pytest.fixture(scope="module")
def release(images: dict[str, str]) -> Iterator[Namespace]:  # noqa: ARG001
    """`helm install` of the chart with its defaults, waiting for every resource."""
    namespace = Namespace.create("sf-helm")
    try:
        helm("install", RELEASE, CHART_DIR, "-n", namespace.name, "--wait", "--timeout", "5m")
        yield namespace
    finally:
        helm("uninstall", RELEASE, "-n", namespace.name, "--wait", "--timeout", "2m", check=False)
        namespace.delete()


def secret_data(namespace: Namespace) -> dict[str, str]:
    data: dict[str, str] = kubectl_json("get", "secret", FULLNAME, "-n", namespace.name)["data"]
    return data


def test_every_pod_is_ready_under_restricted_pod_security(release: Namespace) -> None:
    labels = kubectl_json("get", "namespace", release.name)["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    pods = release.pods()
    names = sorted(p["metadata"]["name"].rsplit("-", 2)[0] for p in pods)
    assert any(n.startswith(f"{FULLNAME}-inventory") for n in names), names
    assert any(n.startswith(f"{FULLNAME}-checkout") for n in names), names
    assert any(p["metadata"]["name"] == f"{FULLNAME}-redis-0" for p in pods)
    wait_until("every pod Ready", release.all_pods_ready, seconds=120)
    # The StatefulSet's claim was provisioned by the cluster's StorageClass and is bound.
    claim = kubectl_json("get", "pvc", f"data-{FULLNAME}-redis-0", "-n", release.name)
    assert claim["status"]["phase"] == "Bound"


def test_helm_test_passes(release: Namespace) -> None:
    result = helm("test", RELEASE, "-n", release.name, "--timeout", "3m", "--logs")
    assert "Phase:          Succeeded" in result.stdout or "Succeeded" in result.stdout, (
        result.stdout
    )


def test_shop_flow_through_the_services(release: Namespace, images: dict[str, str]) -> None:
    report = run_shopper(
        release.name,
        FULLNAME,
        images["checkout"],
        ["flow", "--inventory", INVENTORY, "--checkout", CHECKOUT],
        seconds=120,
    )
    assert report["ok"], report
    assert report["order_id"]


def test_upgrade_rolls_without_a_failed_request_and_keeps_the_secrets(
    release: Namespace, images: dict[str, str]
) -> None:
    before = secret_data(release)
    deployments_before = {
        d["metadata"]["name"]: d["metadata"]["generation"]
        for d in kubectl_json("get", "deployments", "-n", release.name)["items"]
    }
    start_shopper(
        release.name,
        FULLNAME,
        images["checkout"],
        [
            "traffic",
            "--inventory",
            INVENTORY,
            "--checkout",
            CHECKOUT,
            "--seconds",
            "100",
            "--max-flows",
            "1500",
            "--pause",
            "0.1",
        ],
        name="upgrade-traffic",
    )
    wait_until(
        "the traffic pod runs",
        lambda: (
            kubectl(
                "get",
                "pod",
                "upgrade-traffic",
                "-n",
                release.name,
                "-o",
                "jsonpath={.status.phase}",
                check=False,
            )
            == "Running"
        ),
        seconds=60,
    )
    # A changed value that reaches the pods (the ConfigMap checksum annotation): a rollout.
    helm(
        "upgrade",
        RELEASE,
        CHART_DIR,
        "-n",
        release.name,
        "--reuse-values",
        "--set",
        "config.logLevel=debug",
        "--wait",
        "--timeout",
        "5m",
    )
    for name in ("inventory", "checkout"):
        kubectl(
            "rollout",
            "status",
            f"deployment/{FULLNAME}-{name}",
            "-n",
            release.name,
            "--timeout=180s",
            timeout=200,
        )
    report = shopper_report(release.name, "upgrade-traffic", seconds=180)
    deployments_after = {
        d["metadata"]["name"]: d["metadata"]["generation"]
        for d in kubectl_json("get", "deployments", "-n", release.name)["items"]
    }
    assert all(deployments_after[n] > g for n, g in deployments_before.items()), (
        "the upgrade rolled no Deployment",
        deployments_before,
        deployments_after,
    )
    assert report["flows"] > 20, report
    assert report["failures"] == [], report["failures"][:10]
    assert secret_data(release) == before
    assert all(base64.b64decode(v) for v in before.values())
