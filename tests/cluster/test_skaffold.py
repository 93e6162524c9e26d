"""skaffold (built from its Go module, tools/install-skaffold.sh) on the local cluster, in a
copy of the repository: `skaffold run` builds both images locally and deploys the chart with
them; `skaffold dev` rebuilds and redeploys after a source change, which the new pod serves.

skaffold runs with Helm 3 (tools/install-helm3.sh): v2.16.1 does not drive Helm 4. It gets a
global config of its own (no metrics, no update check: nothing leaves the machine)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._unavailable import unavailable
from tests.cluster._kube import (
    KUBECONFIG,
    REPO_ROOT,
    SKAFFOLD,
    TOOLS_BIN,
    kubectl,
    kubectl_json,
    pod_ready,
    wait_until,
)

HELM3_BIN = REPO_ROOT / ".tools" / "helm3" / "bin"
NAMESPACE = "storefront"  # skaffold.yaml's release namespace
MARKER_FILE = "inventory/app.py"
TITLE = 'title="inventory",'


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, cluster: None) -> Iterator[Path]:  # noqa: ARG001
    """A git copy of the working tree (skaffold tags images with the commit) and skaffold's
    environment; the release and its namespace are removed afterwards."""
    for tool, how in (
        (SKAFFOLD, "make cluster-tools"),
        (HELM3_BIN / "helm", "tools/install-helm3.sh"),
    ):
        if not tool.exists():
            unavailable(f"{tool} is missing: run `{how}`")
    copy = tmp_path_factory.mktemp("skaffold") / "storefront"
    files = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO_ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, files):
        source = REPO_ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    git = ["git", "-c", "user.email=ci@storefront.invalid", "-c", "user.name=ci"]
    subprocess.run(["git", "init", "-q"], cwd=copy, check=True)
    subprocess.run([*git, "add", "-A"], cwd=copy, check=True)
    subprocess.run([*git, "commit", "-qm", "skaffold test"], cwd=copy, check=True)
    (copy / ".skaffold-global.yaml").write_text(
        "global:\n  collect-metrics: false\n  update-check: false\n"
        "  survey:\n    disable-prompt: true\n"
    )
    try:
        yield copy
    finally:
        skaffold(copy, "delete", check=False, timeout=300)
        remove_built_images()
        kubectl(
            "delete",
            "namespace",
            NAMESPACE,
            "--ignore-not-found",
            "--wait=true",
            "--timeout=120s",
            timeout=150,
        )


def remove_built_images() -> None:
    """The images skaffold built here: tagged with the copy's commit, and by their ids."""
    listed = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    built = [
        ref
        for ref in listed
        if re.fullmatch(r"storefront-(inventory|checkout):([0-9a-f]{64}|[0-9a-f]{7}(-dirty)?)", ref)
    ]
    if built:
        subprocess.run(["docker", "image", "rm", *built], capture_output=True, check=False)


def skaffold_env() -> dict[str, str]:
    return {
        **os.environ,
        "KUBECONFIG": str(KUBECONFIG),
        "PATH": f"{HELM3_BIN}:{TOOLS_BIN}:{os.environ['PATH']}",
        "SKAFFOLD_UPDATE_CHECK": "false",
        "SKAFFOLD_INTERACTIVE": "false",
    }


def skaffold_args(copy: Path, command: str) -> list[str]:
    return [
        str(SKAFFOLD),
        command,
        "-p",
        "local-cluster",
        "--config",
        str(copy / ".skaffold-global.yaml"),
        "--update-check=false",
        # No artifact cache: a hit skips the build and so the hook that loads the image into
        # a cluster that may be new.
        "--cache-artifacts=false",
        # Without the cache skaffold prunes: it force-removes every other local image of the
        # same repository (storefront-inventory:dev and every other tag on this shared Docker
        # engine). remove_built_images removes what this test built, and only that.
        "--no-prune=true",
    ]


def skaffold(
    copy: Path, command: str, *args: str, check: bool = True, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [*skaffold_args(copy, command), *args],
        cwd=copy,
        env=skaffold_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check:
        assert result.returncode == 0, (
            f"skaffold {command}: {result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    return result


def inventory_pods() -> list[dict[str, Any]]:
    return [
        p
        for p in kubectl_json(
            "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=inventory"
        )["items"]
        if p["metadata"].get("deletionTimestamp") is None
    ]


def served_title(pod: str) -> str:
    """The OpenAPI title the inventory pod serves, read from inside it."""
    out = kubectl(
        "exec",
        pod,
        "-n",
        NAMESPACE,
        "--",
        "python",
        "-c",
        "import json,urllib.request;"
        "print(json.load(urllib.request.urlopen('http://127.0.0.1:8001/openapi.json',"
        " timeout=5))['info']['title'])",
        check=False,
        timeout=30,
    )
    return out.strip()


def test_skaffold_run_deploys_locally_built_images(workspace: Path) -> None:
    skaffold(workspace, "run", "--port-forward=off", "--tail=false", "--status-check=true")
    pods = inventory_pods()
    assert pods and all(pod_ready(p) for p in pods), pods
    image = pods[0]["spec"]["containers"][0]["image"]
    # Unpushed, skaffold deploys each image by its id: the one it just built.
    repo, _, tag = image.rpartition(":")
    assert repo.endswith("storefront-inventory") and len(tag) == 64, image
    built = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", image],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert built == f"sha256:{tag}"
    # No registry serves the chart's default Redis image here: the profile's deploy hook loads
    # the local one and the release runs it (without it Redis stayed in ImagePullBackOff).
    [redis] = kubectl_json(
        "get", "pods", "-n", NAMESPACE, "-l", "app.kubernetes.io/component=redis"
    )["items"]
    assert pod_ready(redis), redis["status"]
    assert redis["spec"]["containers"][0]["image"] == "storefront-cluster/redis:7"


def test_skaffold_dev_redeploys_a_source_change(workspace: Path) -> None:
    before = {p["metadata"]["name"] for p in inventory_pods()}
    log = (workspace / "skaffold-dev.log").open("w")
    dev = subprocess.Popen(
        [
            *skaffold_args(workspace, "dev"),
            "--port-forward=off",
            "--tail=false",
            "--status-check=true",
            "--cleanup=false",
        ],
        cwd=workspace,
        env=skaffold_env(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:

        def deployed() -> bool:
            text = (workspace / "skaffold-dev.log").read_text()
            return "Watching for changes" in text

        wait_until("skaffold dev deploys", deployed, seconds=300, interval=2)
        marker = f"inventory-{int(time.time())}"
        source = workspace / MARKER_FILE
        text = source.read_text()
        assert TITLE in text
        source.write_text(text.replace(TITLE, f'title="{marker}",'))

        def new_pod_serves_the_change() -> str:
            fresh = [
                p for p in inventory_pods() if p["metadata"]["name"] not in before and pod_ready(p)
            ]
            for pod in fresh:
                if served_title(pod["metadata"]["name"]) == marker:
                    return str(pod["metadata"]["name"])
            return ""

        wait_until(
            "the redeployed pod serves the change",
            new_pod_serves_the_change,
            seconds=400,
            interval=3,
        )
    finally:
        os.killpg(dev.pid, signal.SIGINT)
        try:
            dev.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(dev.pid, signal.SIGKILL)
            dev.wait(timeout=30)
        log.close()
