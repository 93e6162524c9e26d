"""redis.architecture=cluster and the managed externalRedis architectures as rendered: the
StatefulSet, its scripts, the create Job, what the services are told. The Docker test
(test_redis_cluster_containers.py) runs the cluster objects."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.chart._helm import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    RELEASE,
    SERVICES,
    VALUES_DIR,
    Doc,
    Rendered,
    run,
)
from tests.chart.conftest import Render

CLUSTER_SETS = ("redis-cluster", "redis-cluster-tuned")
REDIS = f"{FULLNAME}-redis"
SCRIPTS = ("common.sh", "create-cluster.sh", "meet-peers.sh", "ready.sh")


def tuned(values_set: str) -> bool:
    return values_set.endswith("tuned")


def domain(values_set: str) -> str:
    suffix = "k8s.example.internal" if tuned(values_set) else "cluster.local"
    return f"{REDIS}-headless.{NAMESPACE}.svc.{suffix}"


def scripts(rendered: Rendered) -> dict[str, str]:
    data: dict[str, str] = rendered.get("ConfigMap", f"{REDIS}-scripts")["data"]
    return data


def job(rendered: Rendered) -> Doc:
    (found,) = rendered.of_kind("Job")
    return found


@pytest.mark.parametrize("values_set", CLUSTER_SETS)
def test_cluster_pods_run_redis_server_as_cluster_nodes(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    spec = rendered.get("StatefulSet", REDIS)["spec"]
    assert spec["replicas"] == (9 if tuned(values_set) else 6)
    # All at once: a node is ready only once the Job has formed the cluster of all of them.
    assert spec["podManagementPolicy"] == "Parallel"
    (container,) = spec["template"]["spec"]["containers"]
    # No shell around redis-server; Kubernetes expands the password and the pod name.
    assert container["command"] == ["redis-server"]
    assert container["args"] == [
        "/etc/redis/redis.conf",
        "--requirepass", "$(REDIS_PASSWORD)",
        "--masterauth", "$(REDIS_PASSWORD)",
        "--cluster-announce-hostname", f"$(POD_NAME).{domain(values_set)}",
    ]  # fmt: skip
    env = {e["name"]: e["valueFrom"] for e in container["env"]}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    key = "redis-pass" if tuned(values_set) else "redis-password"
    assert env["REDIS_PASSWORD"]["secretKeyRef"]["key"] == key
    assert [(p["name"], p["containerPort"]) for p in container["ports"]] == [
        ("tcp-redis", 6379),
        ("tcp-bus", 16379),
    ]
    assert container["lifecycle"] == {
        "postStart": {"exec": {"command": ["/bin/sh", "/opt/storefront/scripts/meet-peers.sh"]}}
    }
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/opt/storefront/scripts"]["readOnly"] is True
    assert mounts["/data"]["name"] == "data"
    claims = spec.get("volumeClaimTemplates", [])
    assert [c["metadata"]["name"] for c in claims] == ([] if tuned(values_set) else ["data"])
    conf = rendered.get("ConfigMap", REDIS)["data"]["redis.conf"].splitlines()
    timeout = 15000 if tuned(values_set) else 5000
    for line in (
        "cluster-enabled yes",
        "cluster-config-file /data/nodes.conf",  # on the volume: node id, slots, peers
        f"cluster-node-timeout {timeout}",
        "cluster-preferred-endpoint-type hostname",  # clients are sent the DNS names
        "appendonly yes",
        'rename-command CONFIG ""',
    ):
        assert line in conf


@pytest.mark.parametrize("values_set", CLUSTER_SETS)
def test_cluster_scripts_are_posix_sh_with_the_settings(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    dash = shutil.which("dash")
    assert dash is not None, "Debian's dash (the image's /bin/sh in the Docker test)"
    assert set(scripts(rendered)) == set(SCRIPTS)
    for name, text in scripts(rendered).items():
        result = subprocess.run([dash, "-n"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"
    common = scripts(rendered)["common.sh"].splitlines()
    assert f"STATEFULSET={REDIS}" in common
    assert f"DOMAIN={domain(values_set)}" in common
    assert ("NODES=9" if tuned(values_set) else "NODES=6") in common
    assert ("REPLICAS=2" if tuned(values_set) else "REPLICAS=1") in common
    create = scripts(rendered)["create-cluster.sh"]
    assert f"rounds=$(( {600 if tuned(values_set) else 300} ))" in create
    assert '--cluster-replicas "$REPLICAS" --cluster-yes' in create
    # The password never appears in a script: redis-cli reads REDISCLI_AUTH.
    assert "REDISCLI_AUTH=" not in "".join(scripts(rendered).values())


@pytest.mark.parametrize("values_set", CLUSTER_SETS)
def test_create_job_runs_with_every_revision_and_is_not_a_hook(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    """Not a hook: `helm install --wait` would wait for the services, which are ready only
    once the cluster exists, before running a post-install hook. A name per revision: every
    upgrade runs the (idempotent) Job again, and Helm removes the previous one."""
    rendered = rendered_sets[values_set]
    found = job(rendered)
    assert found["metadata"]["name"] == f"{REDIS}-cluster-init-1"
    assert not any(k.startswith("helm.sh/hook") for k in found["metadata"].get("annotations", {}))
    spec = found["spec"]
    assert spec["backoffLimit"] == (3 if tuned(values_set) else 6)
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    (container,) = pod["containers"]
    assert container["command"] == ["/bin/sh", "/opt/storefront/scripts/create-cluster.sh"]
    (env,) = container["env"]
    key = "redis-pass" if tuned(values_set) else "redis-password"
    secret = "shop-secrets" if tuned(values_set) else FULLNAME
    assert env == {
        "name": "REDISCLI_AUTH",
        "valueFrom": {"secretKeyRef": {"name": secret, "key": key}},
    }
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["scripts"]["configMap"]["name"] == f"{REDIS}-scripts"
    # The scripts' checksum: a changed script makes a changed Job (its template is immutable).
    statefulset = rendered.get("StatefulSet", REDIS)["spec"]["template"]["metadata"]
    checksum = spec["template"]["metadata"]["annotations"]["checksum/scripts"]
    assert statefulset["annotations"]["checksum/scripts"] == checksum


@pytest.mark.parametrize("values_set", CLUSTER_SETS)
def test_services_are_told_every_node_and_the_password_by_reference(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    nodes = 9 if tuned(values_set) else 6
    for component in SERVICES:
        config = rendered.get("ConfigMap", f"{FULLNAME}-{component}")["data"]
        assert config["REDIS_CLUSTER_NODES"].split(",") == [
            f"{REDIS}-{ordinal}.{domain(values_set)}:6379" for ordinal in range(nodes)
        ]
        (container,) = rendered.workload(component).containers()
        env = {e["name"]: e for e in container["env"]}
        assert "REDIS_URL" not in env and "REDIS_URL" not in config
        ref = env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"]
        assert ref["name"] == ("shop-secrets" if tuned(values_set) else FULLNAME)


@pytest.mark.parametrize("values_set", CLUSTER_SETS)
def test_cluster_services_and_disruption_budget(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    headless = rendered.get("Service", f"{REDIS}-headless")["spec"]
    # The Job and the postStart resolve nodes that are not ready yet.
    assert headless["publishNotReadyAddresses"] is True
    assert [p["targetPort"] for p in headless["ports"]] == ["tcp-redis", "tcp-bus"]
    pdb = rendered.get("PodDisruptionBudget", REDIS)["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}
    affinity = rendered.get("StatefulSet", REDIS)["spec"]["template"]["spec"]["affinity"]
    anti = affinity["podAntiAffinity"]
    assert list(anti) == [
        "requiredDuringSchedulingIgnoredDuringExecution"
        if tuned(values_set)
        else "preferredDuringSchedulingIgnoredDuringExecution"
    ]


def test_cluster_commands_the_scripts_send_cannot_be_disabled(
    rendered_sets: dict[str, Rendered],
) -> None:
    """Every command the scripts send with redis-cli (and `--cluster create`'s CLUSTER and
    INFO) is among those the schema refuses in redis.disabledCommands."""
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    items = schema["properties"]["redis"]["properties"]["disabledCommands"]["items"]
    protected = set(items["not"]["enum"])
    text = "\n".join(scripts(rendered_sets["redis-cluster"]).values())
    sent = set(re.findall(r'redis-cli(?:\s+-h\s+"[^"]+")?\s+([A-Z]+)\b', text))
    assert {"CLUSTER", "PING", "CLIENT"} <= sent
    assert sent | {"INFO"} <= protected


def test_standalone_and_sentinel_have_no_cluster_parts(rendered_sets: dict[str, Rendered]) -> None:
    for values_set in ("defaults", "redis-sentinel"):
        rendered = rendered_sets[values_set]
        assert rendered.of_kind("Job") == []
        conf = rendered.get("ConfigMap", REDIS)["data"]["redis.conf"]
        assert "cluster-enabled" not in conf
        ports = rendered.get("Service", f"{REDIS}-headless")["spec"]["ports"]
        assert 16379 not in [p["port"] for p in ports]


def test_external_cluster_takes_seeds_password_and_tls_with_a_ca(
    rendered_sets: dict[str, Rendered],
) -> None:
    rendered = rendered_sets["external-redis-cluster"]
    secret = rendered.get("Secret", f"{FULLNAME}-external-redis")
    assert set(secret["data"]) == {"redis-password"}
    for component in SERVICES:
        config = rendered.get("ConfigMap", f"{FULLNAME}-{component}")["data"]
        assert config["REDIS_CLUSTER_NODES"] == (
            "clustercfg.shop.example.com:6380,node-2.shop.example.com:6381"
        )
        # cartlib takes TLS and the CA file from REDIS_URL in cluster mode.
        assert config["REDIS_URL"] == (
            "rediss://localhost:6379/0?ssl_ca_certs=/etc/storefront/redis-tls/ca.crt"
        )
        workload = rendered.workload(component)
        (container,) = workload.containers()
        env = {e["name"]: e for e in container["env"]}
        assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULLNAME}-external-redis",
            "key": "redis-password",
        }
        mounts = {m["name"]: m for m in container["volumeMounts"]}
        assert mounts["redis-tls"] == {
            "name": "redis-tls",
            "mountPath": "/etc/storefront/redis-tls",
            "readOnly": True,
        }
        volumes = {v["name"]: v for v in workload.spec["volumes"]}
        assert volumes["redis-tls"]["secret"] == {
            "secretName": "managed-redis-ca",
            "items": [{"key": "ca.crt", "path": "ca.crt"}],
        }


def test_external_sentinel_takes_sentinels_and_passwords_from_a_managed_secret(
    rendered_sets: dict[str, Rendered],
) -> None:
    rendered = rendered_sets["external-redis-sentinel"]
    assert rendered.find("Secret", f"{FULLNAME}-external-redis") is None
    for component in SERVICES:
        config = rendered.get("ConfigMap", f"{FULLNAME}-{component}")["data"]
        assert config["REDIS_SENTINELS"] == (
            "sentinel-0.redis.example.com:26379,sentinel-1.redis.example.com:26379,10.0.0.12:26380"
        )
        assert config["REDIS_SENTINEL_MASTER"] == "shop-master"
        assert "REDIS_URL" not in config  # no TLS
        (container,) = rendered.workload(component).containers()
        env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"]
               if "secretKeyRef" in e.get("valueFrom", {})}  # fmt: skip
        assert env["REDIS_PASSWORD"] == {"name": "managed-sentinel", "key": "redis"}
        # Sentinels without a password have no such key: optional.
        assert env["REDIS_SENTINEL_PASSWORD"] == {
            "name": "managed-sentinel",
            "key": "sentinel",
            "optional": True,
        }
        assert "REDIS_URL" not in env


def test_external_passwords_go_into_the_charts_secret(render: Render) -> None:
    rendered = render(
        [],
        {
            "redis.enabled": "false",
            "externalRedis.architecture": "sentinel",
            "externalRedis.sentinel.sentinels[0]": "s-0.example.com:26379",
            "externalRedis.password": "redis-pw",
            "externalRedis.sentinel.password": "sentinel-pw",
            "externalRedis.tls.enabled": "true",
        },
    )
    secret = rendered.get("Secret", f"{FULLNAME}-external-redis")
    assert set(secret["data"]) == {"redis-password", "sentinel-password"}
    assert rendered.secret_values() >= {"redis-pw", "sentinel-pw"}
    (container,) = rendered.workload("checkout").containers()
    env = {e["name"]: e["valueFrom"]["secretKeyRef"]["key"] for e in container["env"]
           if "valueFrom" in e}  # fmt: skip
    assert env["REDIS_PASSWORD"] == "redis-password"
    assert env["REDIS_SENTINEL_PASSWORD"] == "sentinel-password"
    config = rendered.get("ConfigMap", f"{FULLNAME}-checkout")["data"]
    assert config["REDIS_URL"] == "rediss://localhost:6379/0"  # TLS, the system CAs


def test_notes_name_the_cluster_and_how_to_check_it(helm: Path) -> None:
    result = run(
        helm, "install", RELEASE, CHART_DIR, "--dry-run=client", "-n", NAMESPACE,
        "--values", VALUES_DIR / "redis-cluster-tuned.yaml",
    )  # fmt: skip
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "Redis runs in the cluster in cluster mode: 9 pods" in notes
    assert f"kubectl exec --namespace {NAMESPACE} {REDIS}-0 -- redis-cli --cluster check" in notes
    assert "WARNING: redis.persistence.enabled is false: a replaced Redis pod" in notes
    external = run(
        helm, "install", RELEASE, CHART_DIR, "--dry-run=client", "-n", NAMESPACE,
        "--values", VALUES_DIR / "external-redis-sentinel.yaml",
    ).stdout.split("NOTES:", 1)[1]  # fmt: skip
    assert "WARNING: externalRedis.tls.enabled is false" in external
    assert "the Sentinels at sentinel-0.redis.example.com:26379" in external
