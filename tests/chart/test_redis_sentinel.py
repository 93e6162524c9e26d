"""redis.architecture=sentinel as rendered: the StatefulSet, its scripts and Services, what
the services are told, and standalone left as it was. test_redis_sentinel_containers.py
runs the same objects in Docker."""

from __future__ import annotations

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

SENTINEL_SETS = ("redis-sentinel", "redis-sentinel-tuned")
REDIS = f"{FULLNAME}-redis"
SCRIPTS = ("common.sh", "handover.sh", "prestop-redis.sh", "start-redis.sh", "start-sentinel.sh")


def containers(rendered: Rendered) -> dict[str, Doc]:
    return {c["name"]: c for c in rendered.workload("redis").containers()}


def scripts(rendered: Rendered) -> dict[str, str]:
    data: dict[str, str] = rendered.get("ConfigMap", f"{REDIS}-scripts")["data"]
    return data


def test_standalone_has_no_sentinel_parts(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["defaults"]
    assert rendered.find("ConfigMap", f"{REDIS}-scripts") is None
    statefulset = rendered.get("StatefulSet", REDIS)
    assert statefulset["spec"]["replicas"] == 1
    assert list(containers(rendered)) == ["redis"]
    assert "lifecycle" not in containers(rendered)["redis"]
    headless = rendered.get("Service", f"{REDIS}-headless")["spec"]
    assert "publishNotReadyAddresses" not in headless
    assert [p["port"] for p in headless["ports"]] == [6379]
    assert set(rendered.get("Secret", FULLNAME)["data"]) == {
        "cart-token-secret",
        "admin-token",
        "redis-password",
    }
    for component in SERVICES:
        config = rendered.get("ConfigMap", f"{FULLNAME}-{component}")["data"]
        assert not any(key.startswith("REDIS_SENTINEL") for key in config)


@pytest.mark.parametrize("values_set", SENTINEL_SETS)
def test_sentinel_pods_run_redis_and_sentinel_from_the_scripts(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    spec = rendered.get("StatefulSet", REDIS)["spec"]
    assert spec["replicas"] == (5 if values_set.endswith("tuned") else 3)
    # Pod 1 starts only once pod 0 is ready, so pod 0's Sentinel can name the master.
    assert spec["podManagementPolicy"] == "OrderedReady"
    assert spec["serviceName"] == f"{REDIS}-headless"
    by_name = containers(rendered)
    assert list(by_name) == ["redis", "sentinel"]
    assert by_name["redis"]["command"] == ["/bin/sh", "/opt/storefront/scripts/start-redis.sh"]
    assert by_name["sentinel"]["command"] == [
        "/bin/sh",
        "/opt/storefront/scripts/start-sentinel.sh",
    ]
    assert set(scripts(rendered)) == set(SCRIPTS)
    # A master hands its role over before it stops (graceful deletions: updates, drains).
    assert by_name["redis"]["lifecycle"]["preStop"]["exec"]["command"] == [
        "/bin/sh",
        "/opt/storefront/scripts/prestop-redis.sh",
    ]
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    assert volumes["scripts"]["configMap"]["name"] == f"{REDIS}-scripts"
    # sentinel.conf holds both passwords: in memory, written at every start.
    assert volumes["sentinel"]["emptyDir"]["medium"] == "Memory"
    for name, container in by_name.items():
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert mounts["/opt/storefront/scripts"]["readOnly"] is True, name
        env = {e["name"]: e["valueFrom"] for e in container["env"]}
        assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
        assert "secretKeyRef" in env["REDIS_SENTINEL_PASSWORD"]
        assert "secretKeyRef" in env["REDIS_PASSWORD"]
    assert by_name["sentinel"]["volumeMounts"][0] == {
        "name": "sentinel",
        "mountPath": "/opt/storefront/sentinel",
    }


@pytest.mark.parametrize("values_set", SENTINEL_SETS)
def test_scripts_are_posix_sh(rendered_sets: dict[str, Rendered], values_set: str) -> None:
    dash = shutil.which("dash")
    assert dash is not None, "Debian's dash (the image's /bin/sh in the Docker test)"
    for name, text in scripts(rendered_sets[values_set]).items():
        result = subprocess.run([dash, "-n"], input=text, capture_output=True, text=True)
        assert result.returncode == 0, f"{name}: {result.stderr}"


def test_sentinel_settings_reach_the_sentinel_config(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["redis-sentinel-tuned"]
    common = scripts(rendered)["common.sh"].splitlines()
    assert f"STATEFULSET={REDIS}" in common
    assert f"DOMAIN={REDIS}-headless.{NAMESPACE}.svc.k8s.example.internal" in common
    assert "REPLICAS=5" in common
    assert "MASTER_SET=shop-master" in common
    assert "SENTINEL_PORT=26380" in common
    sentinel = scripts(rendered)["start-sentinel.sh"]
    for line in (
        '"sentinel resolve-hostnames yes"',
        '"sentinel announce-hostnames yes"',
        '"sentinel announce-ip $ME"',
        '"sentinel monitor $MASTER_SET $MASTER_HOST $MASTER_PORT 3"',
        '"sentinel down-after-milliseconds $MASTER_SET 5000"',
        '"sentinel failover-timeout $MASTER_SET 30000"',
        '"sentinel parallel-syncs $MASTER_SET 2"',
        # Passwords from the environment (the Secret), never rendered.
        '"requirepass \\"$REDIS_SENTINEL_PASSWORD\\""',
        '"sentinel sentinel-pass \\"$REDIS_SENTINEL_PASSWORD\\""',
        '"sentinel auth-pass $MASTER_SET \\"$REDIS_PASSWORD\\""',
    ):
        assert line in sentinel
    redis = scripts(rendered)["start-redis.sh"]
    assert '--requirepass "$REDIS_PASSWORD" --masterauth "$REDIS_PASSWORD"' in redis
    assert '--replica-announce-ip "$ME"' in redis
    port = containers(rendered)["sentinel"]["ports"]
    assert port == [{"name": "tcp-sentinel", "containerPort": 26380, "protocol": "TCP"}]


def test_a_sentinel_master_needs_a_recent_replica_to_write(
    rendered_sets: dict[str, Rendered], render: Render
) -> None:
    """min-replicas-to-write 1 and min-replicas-max-lag 5 by default in sentinel mode (the
    docs/reliability.md has the measurements); none standalone, which has no
    replica."""

    def config(rendered: Rendered) -> list[str]:
        text: str = rendered.get("ConfigMap", REDIS)["data"]["redis.conf"]
        return [line for line in text.splitlines() if line.startswith("min-replicas")]

    assert config(rendered_sets["redis-sentinel"]) == [
        "min-replicas-to-write 1",
        "min-replicas-max-lag 5",
    ]
    assert config(rendered_sets["defaults"]) == []
    off = render(
        [VALUES_DIR / "redis-sentinel.yaml"],
        {"redis.sentinel.minReplicasToWrite": "0", "redis.sentinel.minReplicasMaxLag": "3"},
    )
    assert config(off) == ["min-replicas-to-write 0", "min-replicas-max-lag 3"]


def test_the_prestop_runs_the_hand_over_file_with_the_settings(
    rendered_sets: dict[str, Rendered],
) -> None:
    """The ConfigMap's handover.sh is files/redis/handover.sh unchanged (the reliability test
    runs that file against a Docker Sentinel deployment), and the preStop gives it the other
    pods' Sentinels, this pod's name, a pause bound of half the grace period and a wait for
    the replicas of half down-after (a paused master does not answer the Sentinels' PUBLISH)."""
    rendered = rendered_sets["redis-sentinel-tuned"]
    text = (CHART_DIR / "files" / "redis" / "handover.sh").read_text()
    assert scripts(rendered)["handover.sh"] == text
    prestop = scripts(rendered)["prestop-redis.sh"]
    assert "export HANDOVER_TIMEOUT_SECONDS=15\n" in prestop
    assert "export HANDOVER_CATCHUP_MS=2500\n" in prestop
    assert 'HANDOVER_ADDRESS="$ME:6379"' in prestop
    assert '[ "$peer" = "$ME" ] || sentinels="$sentinels $peer:$SENTINEL_PORT"' in prestop
    assert prestop.rstrip().endswith("exec /bin/sh /opt/storefront/scripts/handover.sh")


@pytest.mark.parametrize("values_set", SENTINEL_SETS)
def test_services_are_told_every_sentinel_and_passwords_by_reference(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    tuned = values_set.endswith("tuned")
    domain = f"{REDIS}-headless.{NAMESPACE}.svc." + (
        "k8s.example.internal" if tuned else "cluster.local"
    )
    port, replicas = (26380, 5) if tuned else (26379, 3)
    secret = "shop-secrets" if tuned else FULLNAME
    keys = (
        ("redis-pass", "sentinel-pass") if tuned else ("redis-password", "redis-sentinel-password")
    )
    for component in SERVICES:
        config = rendered.get("ConfigMap", f"{FULLNAME}-{component}")["data"]
        assert config["REDIS_SENTINELS"].split(",") == [
            f"{REDIS}-{ordinal}.{domain}:{port}" for ordinal in range(replicas)
        ]
        assert config["REDIS_SENTINEL_MASTER"] == ("shop-master" if tuned else "storefront")
        (container,) = rendered.workload(component).containers()
        env = {e["name"]: e for e in container["env"]}
        for name, key in zip(("REDIS_PASSWORD", "REDIS_SENTINEL_PASSWORD"), keys, strict=True):
            assert env[name]["valueFrom"] == {"secretKeyRef": {"name": secret, "key": key}}


@pytest.mark.parametrize("values_set", SENTINEL_SETS)
def test_sentinel_services_and_disruption_budget(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    headless = rendered.get("Service", f"{REDIS}-headless")["spec"]
    # A booting pod resolves the other pods, ready or not, to ask their Sentinels.
    assert headless["publishNotReadyAddresses"] is True
    assert [p["targetPort"] for p in headless["ports"]] == ["tcp-redis", "tcp-sentinel"]
    # The client Service reaches any pod: only its Sentinel, never a (read-only) replica.
    client = rendered.get("Service", REDIS)["spec"]
    assert [p["targetPort"] for p in client["ports"]] == ["tcp-sentinel"]
    pdb = rendered.get("PodDisruptionBudget", REDIS)["spec"]
    assert pdb == {"maxUnavailable": 1, "selector": pdb["selector"]}


def test_sentinel_mode_keeps_config_for_failovers(rendered_sets: dict[str, Rendered]) -> None:
    """Sentinel reconfigures Redis in one MULTI with CONFIG REWRITE: a renamed CONFIG makes
    EXEC fail, and the failover with it. The other disabled commands stay disabled."""
    conf = rendered_sets["redis-sentinel"].get("ConfigMap", REDIS)["data"]["redis.conf"]
    disabled = [line.split()[1] for line in conf.splitlines() if line.startswith("rename-command")]
    assert disabled == ["FLUSHALL", "FLUSHDB", "DEBUG", "KEYS"]


def test_pod_anti_affinity_soft_hard_none_or_your_own(
    rendered_sets: dict[str, Rendered], render: Render
) -> None:
    def affinity(rendered: Rendered) -> Doc | None:
        spec: Doc = rendered.get("StatefulSet", REDIS)["spec"]["template"]["spec"]
        return spec.get("affinity")

    hard = affinity(rendered_sets["redis-sentinel"])
    assert hard is not None
    (term,) = hard["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert term["labelSelector"]["matchLabels"]["app.kubernetes.io/component"] == "redis"
    soft = affinity(render([], {"redis.architecture": "sentinel"}))
    assert soft is not None
    (preferred,) = soft["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert preferred["weight"] == 100
    assert preferred["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert affinity(rendered_sets["redis-sentinel-tuned"]) is None
    term_path = "redis.affinity.nodeAffinity.requiredDuringSchedulingIgnoredDuringExecution"
    expression = f"{term_path}.nodeSelectorTerms[0].matchExpressions[0]"
    own = render(
        [VALUES_DIR / "redis-sentinel.yaml"],
        {f"{expression}.key": "kubernetes.io/os", f"{expression}.operator": "Exists"},
    )
    assert affinity(own) == {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "Exists"}]}
                ]
            }
        }
    }
    # Standalone: one pod, nothing to spread.
    assert affinity(rendered_sets["defaults"]) is None


def test_sentinel_scripts_roll_the_pods(render: Render) -> None:
    def annotations(rendered: Rendered) -> dict[str, str]:
        template = rendered.get("StatefulSet", REDIS)["spec"]["template"]
        result: dict[str, str] = template["metadata"]["annotations"]
        return result

    values = [VALUES_DIR / "redis-sentinel.yaml"]
    base = annotations(render(values))
    slower = annotations(render(values, {"redis.sentinel.downAfterMilliseconds": "20000"}))
    assert base["checksum/scripts"] != slower["checksum/scripts"]
    assert base["checksum/config"] == slower["checksum/config"]


def test_notes_name_the_sentinels_and_how_to_find_the_master(helm: Path) -> None:
    result = run(
        helm, "install", RELEASE, CHART_DIR, "--dry-run=client", "-n", NAMESPACE,
        "--values", VALUES_DIR / "redis-sentinel-tuned.yaml",
    )  # fmt: skip
    notes = result.stdout.split("NOTES:", 1)[1]
    assert f"{REDIS}-4.{REDIS}-headless.{NAMESPACE}.svc.k8s.example.internal:26380" in notes
    assert "SENTINEL get-master-addr-by-name shop-master" in notes
    assert 'jsonpath="{.data.sentinel-pass}"' in notes
    assert "WARNING: redis.persistence.enabled is false: a master pod replaced" in notes
