"""k8s/: the base is the chart rendered (never stale), and every overlay builds and validates."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._unavailable import unavailable

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["dev", "prod", "prod-sentinel"]


def require(tool: str) -> str:
    """The pinned `tool` from tools/install-kube-clients.sh, never the one on PATH."""
    path = ROOT / ".tools/bin" / tool
    if not path.is_file():
        unavailable(f"{path} is missing: run `make kube-clients`")
    return str(path)


def build(overlay: str) -> list[dict[str, Any]]:
    kubectl = require("kubectl")
    output = subprocess.run(
        [kubectl, "kustomize", str(ROOT / "k8s/overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def test_the_base_is_the_chart_rendered() -> None:
    require("helm")
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools/render_manifests.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_builds_and_validates_for_kubernetes(overlay: str, tmp_path: Path) -> None:
    docs = build(overlay)
    rendered = tmp_path / f"{overlay}.yaml"
    rendered.write_text(yaml.safe_dump_all(docs))
    validate = Path(sys.executable).parent / "kubernetes-validate"
    result = subprocess.run(
        [str(validate), "--strict", "-k", "1.29", "-k", "1.34", str(rendered)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_dev_runs_one_small_pod_of_each_service_and_no_service_pdbs() -> None:
    docs = build("dev")
    deployments = by_kind(docs, "Deployment")
    assert {name: d["spec"]["replicas"] for name, d in deployments.items()} == {
        "storefront-inventory": 1,
        "storefront-checkout": 1,
    }
    for deployment in deployments.values():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["resources"]["requests"]["cpu"] == "20m"
    assert set(by_kind(docs, "PodDisruptionBudget")) == {"storefront-redis"}


def test_prod_autoscales_each_service_from_three_with_pdbs() -> None:
    docs = build("prod")
    hpas = by_kind(docs, "HorizontalPodAutoscaler")
    assert {name: h["spec"]["minReplicas"] for name, h in hpas.items()} == {
        "storefront-inventory": 3,
        "storefront-checkout": 3,
    }
    for name, hpa in hpas.items():
        assert hpa["spec"]["scaleTargetRef"]["name"] == name
        assert "replicas" not in by_kind(docs, "Deployment")[name]["spec"]
    assert set(by_kind(docs, "PodDisruptionBudget")) == {
        "storefront-inventory",
        "storefront-checkout",
        "storefront-redis",
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_is_in_the_manifests(overlay: str) -> None:
    docs = build(overlay)
    assert by_kind(docs, "Secret") == {}
    for deployment in by_kind(docs, "Deployment").values():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        refs = {
            e["name"]: e.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
            for e in container["env"]
        }
        assert refs["CART_TOKEN_SECRET"] == refs["REDIS_PASSWORD"] == "storefront"


def test_prod_sentinel_is_prod_with_the_charts_sentinel_mode() -> None:
    """The component turns the base into what the chart renders with
    redis.architecture=sentinel, and keeps the prod overlay's own changes."""
    prod, docs = build("prod"), build("prod-sentinel")
    statefulset = by_kind(docs, "StatefulSet")["storefront-redis"]
    assert statefulset["spec"]["replicas"] == 3
    pod = statefulset["spec"]["template"]["spec"]
    assert [c["name"] for c in pod["containers"]] == ["redis", "sentinel"]
    assert "storefront-redis-scripts" in by_kind(docs, "ConfigMap")
    # prod's autoscalers still own the services' replica counts.
    assert set(by_kind(docs, "HorizontalPodAutoscaler")) == set(
        by_kind(prod, "HorizontalPodAutoscaler")
    )
    sentinels = ",".join(
        f"storefront-redis-{i}.storefront-redis-headless.storefront.svc.cluster.local:26379"
        for i in range(3)
    )
    for name in ("storefront-inventory", "storefront-checkout"):
        deployment = by_kind(docs, "Deployment")[name]
        assert "replicas" not in deployment["spec"]
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in container["env"]}
        assert "REDIS_URL" not in env
        assert env["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": "storefront",
            "key": "redis-sentinel-password",
        }
        config = by_kind(docs, "ConfigMap")[name]["data"]
        assert config["REDIS_SENTINELS"] == sentinels
        assert config["REDIS_SENTINEL_MASTER"] == "storefront"
    # Everything but the component's objects and patches is prod's.
    changed = {"ConfigMap", "Deployment", "NetworkPolicy", "Service", "StatefulSet"}
    for kind in {doc["kind"] for doc in prod} - changed:
        assert by_kind(docs, kind) == by_kind(prod, kind), kind
