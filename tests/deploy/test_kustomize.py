"""k8s/: the base is the chart rendered (never stale), and every overlay builds and validates."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests._unavailable import unavailable

ROOT = Path(__file__).resolve().parents[2]
OVERLAYS = ["dev", "prod"]


def require(tool: str) -> str:
    path = shutil.which(tool) or (
        str(ROOT / ".tools/bin" / tool) if (ROOT / ".tools/bin" / tool).exists() else None
    )
    if path is None:
        unavailable(f"{tool} is missing: run `make test`")
    return path


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
