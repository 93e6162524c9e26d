"""The raw manifests and the monitoring objects on a real API server: every k8s/ overlay
applied server-side (admission, PodSecurity `restricted`, validation), and the chart's
ServiceMonitors and PrometheusRule accepted with the prometheus-operator's own CRDs (the
generated YAML in its Go module, pinned by tools/monitoring-crds/go.mod)."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster._kube import (
    CHART_DIR,
    HELM,
    REPO_ROOT,
    Namespace,
    kubectl,
    kubectl_json,
    run,
)

OVERLAYS = sorted(p.name for p in (REPO_ROOT / "k8s" / "overlays").iterdir() if p.is_dir())
CRDS_MODULE = REPO_ROOT / "tools" / "monitoring-crds"
OPERATOR_MODULE = "github.com/prometheus-operator/prometheus-operator"
MONITORING_CRDS = ("servicemonitors", "prometheusrules")


def go() -> str:
    for candidate in (os.environ.get("GO", ""), "/usr/local/go/bin/go"):
        if candidate and Path(candidate).exists():
            return candidate
    return "go"


@pytest.fixture(scope="module")
def monitoring_crds(cluster: None) -> Iterator[list[str]]:  # noqa: ARG001
    """The operator module's generated CRDs for ServiceMonitor and PrometheusRule, installed."""
    module_dir = subprocess.run(
        [go(), "mod", "download", "-json", OPERATOR_MODULE],
        cwd=CRDS_MODULE,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    crd_dir = Path(json.loads(module_dir.stdout)["Dir"]) / "example" / "prometheus-operator-crd"
    files = [crd_dir / f"monitoring.coreos.com_{name}.yaml" for name in MONITORING_CRDS]
    names = [f"{name}.monitoring.coreos.com" for name in MONITORING_CRDS]
    for path in files:
        kubectl("apply", "--server-side", "-f", str(path))
    for name in names:
        kubectl("wait", "--for=condition=Established", f"crd/{name}", "--timeout=60s")
    try:
        yield names
    finally:
        kubectl("delete", "crd", *names, "--ignore-not-found", "--wait=true", timeout=120)


@pytest.fixture
def storefront_namespace(monitoring_crds: list[str]) -> Iterator[None]:  # noqa: ARG001
    """The overlays' own namespace (k8s/base/namespace.yaml), removed afterwards."""
    try:
        yield
    finally:
        kubectl(
            "delete",
            "namespace",
            "storefront",
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
            timeout=150,
        )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_overlay_is_accepted_server_side(overlay: str, storefront_namespace: None) -> None:  # noqa: ARG001
    result = run(
        REPO_ROOT / ".tools" / "bin" / "kubectl",
        "apply",
        "--server-side",
        "-k",
        str(REPO_ROOT / "k8s" / "overlays" / overlay),
    )
    assert "violate PodSecurity" not in result.stderr, result.stderr
    applied = [line for line in result.stdout.splitlines() if "serverside-applied" in line]
    assert any(line.startswith("deployment.apps/storefront-inventory") for line in applied), applied
    assert any(line.startswith("statefulset.apps/storefront-redis") for line in applied), applied
    # What the API server stored: the Deployments' pods admitted under `restricted`.
    labels = kubectl_json("get", "namespace", "storefront")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_monitoring_objects_are_accepted(monitoring_crds: list[str]) -> None:  # noqa: ARG001
    namespace = Namespace.create("sf-monitoring")
    try:
        rendered = run(
            HELM,
            "template",
            "shop",
            CHART_DIR,
            "-n",
            namespace.name,
            "--set",
            "metrics.serviceMonitor.enabled=true",
            "--set",
            "metrics.prometheusRule.enabled=true",
            "--show-only",
            "templates/app/servicemonitor.yaml",
            "--show-only",
            "templates/metrics/prometheusrule.yaml",
        ).stdout
        result = run(
            REPO_ROOT / ".tools" / "bin" / "kubectl",
            "apply",
            "--server-side",
            "-n",
            namespace.name,
            "-f",
            "-",
            input=rendered,
        )
        assert result.stdout.count("serverside-applied") == 3, result.stdout
        monitors = kubectl_json("get", "servicemonitors", "-n", namespace.name)["items"]
        assert len(monitors) == 2
        rules = kubectl_json("get", "prometheusrules", "-n", namespace.name)["items"]
        assert rules and rules[0]["spec"]["groups"], rules
        # The CRDs' schemas are enforced: a ServiceMonitor with a wrong field type is refused.
        bad = json.dumps(
            {
                "apiVersion": "monitoring.coreos.com/v1",
                "kind": "ServiceMonitor",
                "metadata": {"name": "bad", "namespace": namespace.name},
                "spec": {"selector": {}, "endpoints": [{"port": 8001}]},
            }
        )
        refused = run(
            REPO_ROOT / ".tools" / "bin" / "kubectl",
            "apply",
            "--server-side",
            "-f",
            "-",
            input=bad,
            check=False,
        )
        assert refused.returncode != 0, refused.stdout
        assert ".spec.endpoints[0].port" in refused.stderr, refused.stderr
    finally:
        namespace.delete()
