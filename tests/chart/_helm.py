"""The chart, the tools that check it, and its rendered objects: helpers behind conftest.py.

The tools are project-local (`make chart-tools`): Helm at .tools/bin/helm
(tools/install-kube-clients.sh), checkov in .tools/checkov-venv, readme-generator in
.tools/readme-generator; the environment variables HELM, CHECKOV and README_GENERATOR point
elsewhere. kubernetes-validate comes with the dev group. A missing tool skips its tests
locally, with the reason, and fails them in CI (CI=true), where no test may be skipped.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import pytest
import yaml

from tests._unavailable import unavailable

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
CHART_DIR: Final = REPO_ROOT / "charts" / "storefront"
TESTS_DIR: Final = Path(__file__).resolve().parent
VALUES_DIR: Final = TESTS_DIR / "values"
INVALID_VALUES_DIR: Final = VALUES_DIR / "invalid"

HELM: Final = Path(os.environ.get("HELM", REPO_ROOT / ".tools" / "bin" / "helm"))
HELM_VERSION: Final = "v4.1.4"
CHECKOV: Final = Path(
    os.environ.get("CHECKOV", REPO_ROOT / ".tools" / "checkov-venv" / "bin" / "checkov")
)
README_GENERATOR: Final = Path(
    os.environ.get(
        "README_GENERATOR",
        REPO_ROOT / ".tools" / "readme-generator" / "node_modules" / ".bin" / "readme-generator",
    )
)
KUBERNETES_VALIDATE: Final = Path(sys.executable).with_name("kubernetes-validate")

RELEASE: Final = "shop"
NAMESPACE: Final = "storefront"
FULLNAME: Final = "shop-storefront"  # <release>-<chart>
SERVICES: Final = ("inventory", "checkout")
WORKLOAD_KINDS: Final = ("Deployment", "StatefulSet", "Job", "Pod")

Doc = dict[str, Any]


def require_tool(path: Path, how_to_get: str) -> Path:
    """`path` if it is an executable file; else skip the test (fail it in CI)."""
    if path.is_file() and os.access(path, os.X_OK):
        return path
    unavailable(f"{path} is missing: {how_to_get}")


def run(*args: str | Path, check: bool = True, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command and capture its output; with `check`, fail the test with it on error."""
    result = subprocess.run(
        [str(arg) for arg in args], capture_output=True, text=True, check=False, **kwargs
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(str(a) for a in args)} exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return result


def matrix() -> list[str]:
    """Names of the values sets in tests/chart/values/ (each file's stem)."""
    return sorted(path.stem for path in VALUES_DIR.glob("*.yaml"))


def invalid_values() -> list[str]:
    """Names of the wrong values files in tests/chart/values/invalid/."""
    return sorted(path.name for path in INVALID_VALUES_DIR.glob("*.yaml"))


def values_of(name: str) -> Doc:
    """The values a matrix set sets (the file, not merged with the chart's defaults)."""
    data = yaml.safe_load((VALUES_DIR / f"{name}.yaml").read_text())
    return data or {}


def template_args(
    values_files: Sequence[Path] = (), set_values: Mapping[str, str] = {}
) -> list[str]:
    """`helm template` arguments for the test release, namespace, values files and --set."""
    args = ["template", RELEASE, str(CHART_DIR), "--namespace", NAMESPACE]
    for values_file in values_files:
        args += ["--values", str(values_file)]
    for key, value in set_values.items():
        args += ["--set", f"{key}={value}"]
    return args


@dataclass(frozen=True)
class Rendered:
    """One `helm template` output: the YAML text (also saved to `path`) and its objects."""

    name: str
    path: Path
    documents: tuple[Doc, ...] = field(repr=False)

    @classmethod
    def from_text(cls, name: str, text: str, path: Path) -> Rendered:
        path.write_text(text)
        documents = tuple(doc for doc in yaml.safe_load_all(text) if doc)
        return cls(name=name, path=path, documents=documents)

    def of_kind(self, kind: str) -> list[Doc]:
        return [doc for doc in self.documents if doc["kind"] == kind]

    def get(self, kind: str, name: str) -> Doc:
        for doc in self.of_kind(kind):
            if doc["metadata"]["name"] == name:
                return doc
        raise AssertionError(f"{self.name}: no {kind} {name}")

    def find(self, kind: str, name: str) -> Doc | None:
        return next((d for d in self.of_kind(kind) if d["metadata"]["name"] == name), None)

    def workloads(self) -> Iterator[Workload]:
        """Every pod the release would run: Deployments', StatefulSets', Jobs' and bare Pods'."""
        for doc in self.documents:
            if doc["kind"] in ("Deployment", "StatefulSet", "Job"):
                template = doc["spec"]["template"]
                yield Workload(doc, template["metadata"]["labels"], template["spec"])
            elif doc["kind"] == "Pod":
                yield Workload(doc, doc["metadata"]["labels"], doc["spec"])

    def workload(self, component: str) -> Workload:
        for workload in self.workloads():
            if workload.component == component:
                return workload
        raise AssertionError(f"{self.name}: no workload of component {component}")

    def secret_values(self) -> set[str]:
        """Every value of every rendered Secret, decoded."""
        import base64

        values: set[str] = set()
        for secret in self.of_kind("Secret"):
            for encoded in (secret.get("data") or {}).values():
                values.add(base64.b64decode(encoded).decode())
            values.update((secret.get("stringData") or {}).values())
        return values


@dataclass(frozen=True)
class Workload:
    """A pod template (or bare Pod): its owner object, pod labels and pod spec."""

    owner: Doc
    labels: dict[str, str]
    spec: Doc

    @property
    def component(self) -> str:
        return self.labels["app.kubernetes.io/component"]

    @property
    def name(self) -> str:
        return f"{self.owner['kind']}/{self.owner['metadata']['name']}"

    def containers(self) -> list[Doc]:
        return list(self.spec.get("initContainers", [])) + list(self.spec["containers"])


def selects(match_labels: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """Whether a matchLabels selector selects an object with `labels`."""
    return all(labels.get(key) == value for key, value in match_labels.items())


def peer_admits(peer: Doc, labels: Mapping[str, str]) -> bool:
    """Whether a NetworkPolicy peer admits a pod of this release's namespace with `labels`."""
    if "ipBlock" in peer:
        return False  # pod-to-pod traffic inside the cluster is not what these rules are about
    namespace_selector = peer.get("namespaceSelector")
    if namespace_selector is not None:
        ns_labels = {"kubernetes.io/metadata.name": NAMESPACE}
        if not selects(namespace_selector.get("matchLabels", {}), ns_labels):
            return False
    pod_selector = peer.get("podSelector", {})
    assert not pod_selector.get("matchExpressions"), "only matchLabels is evaluated here"
    return selects(pod_selector.get("matchLabels", {}), labels)


def ingress_admits(policy: Doc, labels: Mapping[str, str], port: int) -> bool:
    """Whether `policy` lets a pod with `labels` (same namespace) connect to `port`."""
    for rule in policy["spec"].get("ingress", []):
        ports = rule.get("ports")
        if ports is not None and not any(p.get("port") == port for p in ports):
            continue
        peers = rule.get("from")
        if peers is None or any(peer_admits(peer, labels) for peer in peers):
            return True
    return False
