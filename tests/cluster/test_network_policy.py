"""NetworkPolicy enforced on a real cluster (kube-router's firewall, tools/cluster.sh): with
`networkPolicy.enabled` and `allowExternal: false`, a pod carrying the release's client label
walks the shop flow, and the same pod without the label cannot reach the services."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.cluster._kube import CHART_DIR, Namespace, helm, run_shopper

RELEASE = "shop"
FULLNAME = f"{RELEASE}-storefront"
INVENTORY = f"http://{FULLNAME}-inventory:8001"
CHECKOUT = f"http://{FULLNAME}-checkout:8002"


@pytest.fixture(scope="module")
def guarded_release(images: dict[str, str]) -> Iterator[Namespace]:  # noqa: ARG001
    namespace = Namespace.create("sf-netpol")
    try:
        helm(
            "install",
            RELEASE,
            CHART_DIR,
            "-n",
            namespace.name,
            "--set",
            "networkPolicy.enabled=true",
            "--set",
            "networkPolicy.allowExternal=false",
            "--wait",
            "--timeout",
            "5m",
        )
        yield namespace
    finally:
        helm("uninstall", RELEASE, "-n", namespace.name, "--wait", "--timeout", "2m", check=False)
        namespace.delete()


def test_only_labelled_clients_reach_the_services(
    guarded_release: Namespace, images: dict[str, str]
) -> None:
    namespace = guarded_release.name
    flow = run_shopper(
        namespace,
        FULLNAME,
        images["checkout"],
        ["flow", "--inventory", INVENTORY, "--checkout", CHECKOUT],
        seconds=120,
        name="labelled-shopper",
    )
    assert flow["ok"], flow
    for service in (INVENTORY, CHECKOUT):
        insider = run_shopper(
            namespace,
            FULLNAME,
            images["checkout"],
            ["reach", "--checkout", service],
            seconds=120,
            name="insider",
        )
        assert insider["reachable"] is True, (service, insider)
        # Refused every time, over 5 s (not only before the policy engine knew the pod).
        outsider = run_shopper(
            namespace,
            FULLNAME,
            images["checkout"],
            ["reach", "--checkout", service, "--attempts", "5"],
            seconds=120,
            name="outsider",
            client_label=False,
        )
        assert outsider["reachable"] is False, (service, outsider)
        assert len(outsider["errors"]) == 5, outsider
