"""The test cluster itself: created by redis-cli as an operator would, on Redis 7 and Valkey 8,
it routes keys over three masters and fails over when a master dies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests._cluster import ClusterDeployment, running_cluster


@pytest.fixture(scope="module", params=["7", "valkey8"], ids=["redis7", "valkey8"])
def cluster(request: pytest.FixtureRequest) -> Iterator[ClusterDeployment]:
    with running_cluster(request.param) as deployment:
        yield deployment


def test_keys_spread_over_three_masters_and_one_tag_stays_on_one(
    cluster: ClusterDeployment,
) -> None:
    client = cluster.client()
    try:
        for index in range(300):
            client.set(f"spread:{index}", index)
        for index in range(20):
            client.set(f"tagged:{{session-1}}:{index}", index)
        holders = set()
        for node in cluster.masters():
            node_client = node.client()
            try:
                count = node_client.dbsize()
                keys = node_client.keys("tagged:*")
            finally:
                node_client.close()
            assert count > 0, f"{node.name} holds no key"
            if keys:
                holders.add(node.name)
        assert len(cluster.masters()) == 3
        assert len(holders) == 1, "one hash tag is one slot, on one master"
        assert client.get("spread:299") == b"299"
    finally:
        client.close()


def test_a_killed_master_is_replaced_by_its_replica(cluster: ClusterDeployment) -> None:
    key = "before:{failover}"
    client: Any = cluster.client()
    try:
        owner_address = client.get_node_from_key(key)
        owner = next(node for node in cluster.nodes if node.port == owner_address.port)
        owner_client = owner.client()
        try:
            owner_client.set(key, "kept")
            # On the connection that wrote: the replica has the key before the master dies.
            assert owner_client.wait(1, 5000) == 1
        finally:
            owner_client.close()
        owner.kill()
        cluster.wait_until_ok(masters=3, replicated=False)
        assert owner not in cluster.masters()
    finally:
        client.close()
    fresh = cluster.client()
    try:
        assert fresh.get(key) == b"kept"
    finally:
        fresh.close()
    owner.start()
    cluster.wait_until_ok(masters=3)
    assert owner.role() == "slave", "a restarted old master rejoins as a replica"
