"""The local cluster (tools/cluster.sh) as the tests use it: kubectl, helm and in-cluster
shoppers. Helpers behind conftest.py.

kubectl and helm are the project's pinned ones (.tools/bin, tools/install-kube-clients.sh:
kubectl 1.35, one minor version above the cluster's 1.34, within Kubernetes' version skew
policy). Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CHART_DIR: Final = REPO_ROOT / "charts" / "storefront"
CLUSTER_SH: Final = REPO_ROOT / "tools" / "cluster.sh"
TOOLS_BIN: Final = REPO_ROOT / ".tools" / "bin"
KUBECTL: Final = TOOLS_BIN / "kubectl"
HELM: Final = Path(os.environ.get("HELM", TOOLS_BIN / "helm"))
SKAFFOLD: Final = TOOLS_BIN / "skaffold"
KUBECONFIG: Final = (
    Path(os.environ.get("STOREFRONT_CLUSTER_DIR", "/var/lib/storefront-cluster"))
    / "admin.kubeconfig"
)
SHOPPER: Final = Path(__file__).resolve().parent / "shopper.py"

RESTRICTED_LABELS: Final = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
    "pod-security.kubernetes.io/warn": "restricted",
}


def run(
    *args: str | Path, check: bool = True, timeout: float = 300, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command (bounded by `timeout`); with `check`, fail the test with its output."""
    env = {**os.environ, "KUBECONFIG": str(KUBECONFIG), "PATH": f"{TOOLS_BIN}:{os.environ['PATH']}"}
    try:
        result = subprocess.run(
            [str(arg) for arg in args],
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout,
            input=input,
            env=env,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(
            f"{' '.join(map(str, args))} did not finish in {timeout}s: {exc}", pytrace=False
        )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return result


def kubectl(*args: str, check: bool = True, timeout: float = 120, input: str | None = None) -> str:
    return run(KUBECTL, *args, check=check, timeout=timeout, input=input).stdout


def kubectl_json(*args: str) -> Any:
    return json.loads(kubectl(*args, "-o", "json"))


def helm(
    *args: str | Path, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    return run(HELM, *args, check=check, timeout=timeout)


def wait_until(what: str, predicate: Any, *, seconds: float, interval: float = 1.0) -> Any:
    """Call `predicate` until it returns something truthy (returned) or `seconds` pass (fail)."""
    deadline = time.monotonic() + seconds
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"{what}: not within {seconds}s (last: {last!r})", pytrace=False)


def chart_app_version() -> str:
    chart = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())
    return str(chart["appVersion"])


@dataclass
class Namespace:
    """A namespace the test made, labelled for PodSecurity `restricted` enforcement."""

    name: str

    @classmethod
    def create(cls, prefix: str) -> Namespace:
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        labels = [f"{key}={value}" for key, value in RESTRICTED_LABELS.items()]
        kubectl("create", "namespace", name)
        kubectl("label", "namespace", name, *labels)
        return cls(name)

    def delete(self) -> None:
        kubectl(
            "delete",
            "namespace",
            self.name,
            "--wait=true",
            "--timeout=120s",
            check=False,
            timeout=150,
        )

    def pods(self, selector: str = "") -> list[dict[str, Any]]:
        args = ["get", "pods", "-n", self.name]
        if selector:
            args += ["-l", selector]
        items: list[dict[str, Any]] = kubectl_json(*args)["items"]
        return items

    def all_pods_ready(self) -> bool:
        pods = [p for p in self.pods() if p["status"].get("phase") not in ("Succeeded", "Failed")]
        return bool(pods) and all(pod_ready(p) for p in pods)


def pod_ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def restricted_security() -> tuple[dict[str, Any], dict[str, Any]]:
    """Pod and container securityContext that PodSecurity `restricted` admits."""
    pod = {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    container = {
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    return pod, container


def run_shopper(
    namespace: str,
    release_fullname: str,
    image: str,
    args: Sequence[str],
    *,
    seconds: float,
    name: str = "shopper",
    files: dict[str, str] | None = None,
    client_label: bool = True,
) -> dict[str, Any]:
    """Run shopper.py in a Pod (the checkout image's Python) and return its JSON report.

    The Pod carries the release's client label, so the chart's NetworkPolicies admit it.
    `files` ({name: text}) are mounted beside shopper.py, in /shopper."""
    start_shopper(
        namespace, release_fullname, image, args, name=name, files=files, client_label=client_label
    )
    return shopper_report(namespace, name, seconds=seconds)


def start_shopper(
    namespace: str,
    release_fullname: str,
    image: str,
    args: Sequence[str],
    *,
    name: str,
    files: dict[str, str] | None = None,
    client_label: bool = True,
) -> None:
    configmap = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": namespace},
        "data": {"shopper.py": SHOPPER.read_text(), **(files or {})},
    }
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(configmap))
    pod_security, container_security = restricted_security()
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app": "shopper",
                **({f"{release_fullname}-client": "true"} if client_label else {}),
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "securityContext": pod_security,
            "containers": [
                {
                    "name": "shopper",
                    "image": image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python", "/shopper/shopper.py", *args],
                    "env": [{"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}],
                    "securityContext": container_security,
                    "resources": {
                        "requests": {"cpu": "50m", "memory": "64Mi"},
                        "limits": {"memory": "128Mi"},
                    },
                    "volumeMounts": [{"name": "shopper", "mountPath": "/shopper"}],
                }
            ],
            "volumes": [{"name": "shopper", "configMap": {"name": name}}],
        },
    }
    kubectl("delete", "pod", name, "-n", namespace, "--ignore-not-found", "--wait=true")
    kubectl("apply", "-f", "-", input=json.dumps(pod))


def shopper_report(namespace: str, name: str, *, seconds: float) -> dict[str, Any]:
    """Wait (bounded) for the shopper Pod to end; its last log line, parsed; the Pod removed."""

    def ended() -> str:
        phase = kubectl(
            "get", "pod", name, "-n", namespace, "-o", "jsonpath={.status.phase}", check=False
        )
        return phase if phase in ("Succeeded", "Failed") else ""

    phase = wait_until(f"shopper pod {name} in {namespace} ends", ended, seconds=seconds)
    logs = kubectl("logs", name, "-n", namespace)
    kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    assert phase == "Succeeded", f"shopper {name} {phase}:\n{logs[-3000:]}"
    report: dict[str, Any] = json.loads(logs.strip().splitlines()[-1])
    return report
