"""`tools/cluster.sh load`: an image containerd already has with the same content (its config
digest equals the Docker image id) is not imported again; different content under the same
name is. Read back from the cluster's containerd with `ctr`, not from timings."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cluster._kube import CLUSTER_SH, run

CONTAINERD_SOCK = (
    Path(os.environ.get("STOREFRONT_CLUSTER_RUN", "/run/storefront-cluster"))
    / "containerd"
    / "containerd.sock"
)
# Two images every cluster has in Docker (tools/cluster.sh up builds them).
FIRST = "storefront-cluster/busybox:1.35"
SECOND = "storefront-cluster/pause:3.10"


def ctr(*args: str) -> str:
    return run("ctr", "--address", CONTAINERD_SOCK, "--namespace", "k8s.io", *args).stdout


def docker_id(image: str) -> str:
    return run("docker", "image", "inspect", "--format", "{{.Id}}", image).stdout.strip()


def config_digest(ref: str) -> str:
    """The config digest of the image `ref` names in containerd (`ctr images ls` shows the
    manifest's digest; the manifest names the config)."""
    [line] = [
        row for row in ctr("images", "ls", f"name=={ref}").splitlines() if row.startswith(ref)
    ]
    manifest = ctr("content", "get", line.split()[2])
    return str(json.loads(manifest)["config"]["digest"])


@pytest.fixture
def ref(cluster: None) -> Iterator[str]:  # noqa: ARG001
    name = f"docker.io/storefront-test/load:{uuid.uuid4().hex[:8]}"
    try:
        yield name
    finally:
        run(
            "ctr",
            "--address",
            CONTAINERD_SOCK,
            "--namespace",
            "k8s.io",
            "images",
            "rm",
            name,
            check=False,
        )


def load(spec: str) -> str:
    return run(CLUSTER_SH, "load", spec, timeout=300).stderr


def test_load_skips_the_same_content_and_replaces_other_content(ref: str) -> None:
    first = load(f"{FIRST}={ref}")
    assert f"loading {FIRST} into the cluster as {ref}" in first, first
    assert config_digest(ref) == docker_id(FIRST)

    again = load(f"{FIRST}={ref}")
    assert f"{ref} is already in the cluster" in again, again
    assert "loading" not in again, again

    other = load(f"{SECOND}={ref}")
    assert f"loading {SECOND} into the cluster as {ref}" in other, other
    assert config_digest(ref) == docker_id(SECOND)
