"""Fixtures of the tests against a real single-node Kubernetes (tools/cluster.sh).

`make test-cluster` runs them (not `make test`). The session starts the cluster, unless one
already answers (then it is reused and left running), loads the images `make images` and
`make redis-images` built into the cluster's containerd under the references the chart's
defaults name, and stops what it started at the end (STOREFRONT_KEEP_CLUSTER=1 keeps it).
Not root, or no tools: skipped locally with the reason, failed in CI.

Fixtures:
    cluster       session: the running cluster (nothing to use: kubectl and helm in _kube)
    images        session: {"inventory"|"checkout"|"redis": reference the chart defaults to}
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import yaml

from tests._unavailable import unavailable
from tests.cluster._kube import CHART_DIR, CLUSTER_SH, HELM, KUBECTL, chart_app_version, run

# Whole-cluster steps (a cold `up`, a helm install waiting for its pods) take minutes.
CLUSTER_TEST_TIMEOUT = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/cluster/" in item.nodeid and item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(CLUSTER_TEST_TIMEOUT))


@pytest.fixture(scope="session")
def cluster() -> Iterator[None]:
    if os.geteuid() != 0:
        unavailable("the local cluster needs root (tools/cluster.sh)")
    for tool, how in ((KUBECTL, "make cluster-tools"), (HELM, "make helm")):
        if not tool.exists():
            unavailable(f"{tool} is missing: run `{how}`")
    reused = run(CLUSTER_SH, "status", check=False, timeout=60).returncode == 0
    if not reused:
        # Whatever a stopped run left (a machine restarted mid-run) goes first.
        run(CLUSTER_SH, "down", timeout=600)
        run(CLUSTER_SH, "up", timeout=1800)
    try:
        yield
    finally:
        if not reused and os.environ.get("STOREFRONT_KEEP_CLUSTER") != "1":
            run(CLUSTER_SH, "down", timeout=600)


@pytest.fixture(scope="session")
def images(cluster: None) -> dict[str, str]:  # noqa: ARG001
    """The chart's default images, present in the cluster: the local builds, named as the
    defaults name them (a cluster with a registry would pull them instead)."""
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    app_version = chart_app_version()
    refs = {
        "inventory": f"{values['inventory']['image']['repository']}:{app_version}",
        "checkout": f"{values['checkout']['image']['repository']}:{app_version}",
        "redis": f"{values['redis']['image']['repository']}:{values['redis']['image']['tag']}",
    }
    # The names tools/build-images.sh gives them (the same variables choose others).
    inventory = os.environ.get("STOREFRONT_INVENTORY_IMAGE", "storefront-inventory:dev")
    checkout = os.environ.get("STOREFRONT_CHECKOUT_IMAGE", "storefront-checkout:dev")
    for local in (inventory, checkout, "storefront-redis:7"):
        if run("docker", "image", "inspect", local, check=False).returncode != 0:
            unavailable(f"no local image {local}: run `make images redis-images`")
    redis_image = run(CLUSTER_SH, "redis-image").stdout.strip()
    run(
        CLUSTER_SH,
        "load",
        f"{inventory}={refs['inventory']}",
        f"{checkout}={refs['checkout']}",
        f"{redis_image}={refs['redis']}",
        timeout=600,
    )
    return refs
