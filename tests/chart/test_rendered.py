"""Assertions on the objects the chart renders, for every values set of tests/chart/values/."""

from __future__ import annotations

import base64
import json
import re

import pytest

from cartlib.settings import Settings
from tests.chart._helm import (
    CHART_DIR,
    FULLNAME,
    NAMESPACE,
    REPO_ROOT,
    SERVICES,
    VALUES_DIR,
    Rendered,
    ingress_admits,
    matrix,
    selects,
    values_of,
)
from tests.chart.conftest import Render

MATRIX = matrix()
# Environment variables the pods get from Secrets; none may have a plain value, except
# REDIS_URL as `redis://:$(REDIS_PASSWORD)@...` (redis_url_template).
SECRET_ENV = {
    "REDIS_URL",
    "REDIS_PASSWORD",
    "REDIS_SENTINEL_PASSWORD",
    "CART_TOKEN_SECRET",
    "ADMIN_TOKEN",
}
STANDARD_LABELS = (
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/version",
    "app.kubernetes.io/component",
    "app.kubernetes.io/part-of",
    "app.kubernetes.io/managed-by",
    "helm.sh/chart",
)
RUN_AS = {
    "inventory": 10001,
    "checkout": 10001,
    "smoke-test": 10001,
    "loadgenerator": 10001,
    "redis": 999,
    "redis-cluster-init": 999,
}


def fullname(values_set: str) -> str:
    override = values_of(values_set).get("nameOverride")
    return f"shop-{override}" if override else FULLNAME


def redis_url_template(values_set: str) -> str:
    """REDIS_URL of the in-cluster Redis: the password is Kubernetes' $(REDIS_PASSWORD)."""
    return f"redis://:$(REDIS_PASSWORD)@{fullname(values_set)}-redis.{NAMESPACE}.svc:6379/0"


def redis_enabled(values_set: str) -> bool:
    return bool(values_of(values_set).get("redis", {}).get("enabled", True))


def sentinel_mode(values_set: str) -> bool:
    redis = values_of(values_set).get("redis", {})
    return redis_enabled(values_set) and redis.get("architecture") == "sentinel"


def cluster_mode(values_set: str) -> bool:
    redis = values_of(values_set).get("redis", {})
    return redis_enabled(values_set) and redis.get("architecture") == "cluster"


def external_architecture(values_set: str) -> str | None:
    """externalRedis.architecture of a set without the in-cluster Redis, else None."""
    if redis_enabled(values_set):
        return None
    return str(values_of(values_set)["externalRedis"].get("architecture", "standalone"))


def sentinel_port(values_set: str) -> int:
    return int(values_of(values_set).get("redis", {}).get("sentinel", {}).get("port", 26379))


def network_policies_enabled(values_set: str) -> bool:
    return bool(values_of(values_set).get("networkPolicy", {}).get("enabled", False))


def loadgenerator_enabled(values_set: str) -> bool:
    return bool(values_of(values_set).get("loadgenerator", {}).get("enabled", False))


@pytest.mark.parametrize("values_set", MATRIX)
def test_every_object_has_the_standard_labels(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    for doc in rendered.documents:
        labels = doc["metadata"]["labels"]
        missing = [label for label in STANDARD_LABELS if label not in labels]
        assert missing == [], f"{doc['kind']}/{doc['metadata']['name']}"
        assert labels["app.kubernetes.io/part-of"] == "storefront"
        assert doc["metadata"]["namespace"] == NAMESPACE
    for workload in rendered.workloads():
        missing = [label for label in STANDARD_LABELS if label not in workload.labels]
        assert missing == [], workload.name


@pytest.mark.parametrize("values_set", MATRIX)
def test_services_probe_healthz_and_readyz(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    for component in SERVICES:
        workload = rendered_sets[values_set].workload(component)
        (container,) = workload.containers()
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        if "startupProbe" in container:
            assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert [port["name"] for port in container["ports"]] == ["http"]


def test_startup_probe_is_optional(rendered_sets: dict[str, Rendered]) -> None:
    for values_set, expected in (("defaults", False), ("autoscaling", True)):
        for component in SERVICES:
            (container,) = rendered_sets[values_set].workload(component).containers()
            assert ("startupProbe" in container) is expected


@pytest.mark.parametrize("values_set", [name for name in MATRIX if redis_enabled(name)])
def test_redis_probes_use_redis_cli(rendered_sets: dict[str, Rendered], values_set: str) -> None:
    containers = {c["name"]: c for c in rendered_sets[values_set].workload("redis").containers()}
    container = containers.pop("redis")
    # Liveness: Redis answers at all (exit 0 even for LOADING); readiness: PONG (-e), and in
    # cluster mode a cluster that serves every slot (the script, run by the Docker test).
    assert container["livenessProbe"]["exec"]["command"] == ["redis-cli", "ping"]
    readiness = container["readinessProbe"]["exec"]["command"]
    if cluster_mode(values_set):
        assert readiness == ["/bin/sh", "/opt/storefront/scripts/ready.sh"]
    else:
        assert readiness == ["redis-cli", "-e", "ping"]
    env = {item["name"]: item for item in container["env"]}
    assert "secretKeyRef" in env["REDISCLI_AUTH"]["valueFrom"]
    if not sentinel_mode(values_set):
        assert containers == {}
        return
    # The Sentinel's probes: the same, on its port, with the Sentinel password.
    sentinel = containers.pop("sentinel")
    assert containers == {}
    port = str(sentinel_port(values_set))
    assert sentinel["livenessProbe"]["exec"]["command"] == ["redis-cli", "-p", port, "ping"]
    assert sentinel["readinessProbe"]["exec"]["command"] == ["redis-cli", "-p", port, "-e", "ping"]
    env = {item["name"]: item for item in sentinel["env"]}
    ref = env["REDISCLI_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref == env["REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"]


@pytest.mark.parametrize("values_set", MATRIX)
def test_pods_run_restricted(rendered_sets: dict[str, Rendered], values_set: str) -> None:
    """The restricted Pod Security Standard, a read-only root with /tmp on an emptyDir, no
    service account token, and requests and limits: for every pod, the test pod included."""
    workloads = list(rendered_sets[values_set].workloads())
    assert {w.component for w in workloads} >= {"inventory", "checkout", "smoke-test"}
    for workload in workloads:
        spec, uid = workload.spec, RUN_AS[workload.component]
        assert spec["automountServiceAccountToken"] is False, workload.name
        assert spec["securityContext"]["runAsNonRoot"] is True, workload.name
        assert spec["securityContext"]["runAsUser"] == uid, workload.name
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))
        volumes = {volume["name"]: volume for volume in spec["volumes"]}
        for container in workload.containers():
            context = container["securityContext"]
            where = f"{workload.name} {container['name']}"
            assert context["runAsNonRoot"] is True, where
            assert context["runAsUser"] == uid, where
            assert context["readOnlyRootFilesystem"] is True, where
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["privileged"] is False, where
            assert context["capabilities"] == {"drop": ["ALL"]}, where
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, where
            mounts = {mount["mountPath"]: mount["name"] for mount in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], where
            for kind in ("requests", "limits"):
                assert set(container["resources"][kind]) >= {"cpu", "memory"}, where


@pytest.mark.parametrize("values_set", MATRIX)
def test_deployments_roll_without_losing_capacity(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    for component in SERVICES:
        deployment = rendered.get("Deployment", f"{fullname(values_set)}-{component}")
        spec = deployment["spec"]
        assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
        assert spec["revisionHistoryLimit"] >= 1
        # A deleted pod keeps serving while its endpoint is withdrawn, then has the 20 s
        # uvicorn gives in-flight requests (cartlib.web.server) before SIGKILL.
        pod = spec["template"]["spec"]
        (container,) = pod["containers"]
        sleep = container["lifecycle"]["preStop"]["exec"]["command"]
        assert sleep[:2] == ["python", "-c"]
        seconds = re.fullmatch(r"import time; time.sleep\((\d+)\)", sleep[2])
        assert seconds is not None
        assert pod["terminationGracePeriodSeconds"] >= int(seconds[1]) + 20
        hpa = rendered.find("HorizontalPodAutoscaler", deployment["metadata"]["name"])
        # With an autoscaler the Deployment leaves replicas to it (an upgrade would reset them).
        assert ("replicas" in spec) is (hpa is None)
        if hpa is not None:
            assert hpa["spec"]["scaleTargetRef"] == {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": deployment["metadata"]["name"],
            }
            assert hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]


@pytest.mark.parametrize("values_set", MATRIX)
def test_topology_spread_selects_the_components_own_pods(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    for component in SERVICES:
        workload = rendered.workload(component)
        constraints = workload.spec.get("topologySpreadConstraints", [])
        enabled = values_of(values_set).get(component, {}).get("topologySpread", {})
        if enabled.get("enabled", True) is False:
            assert constraints == []
            continue
        keys = [c["topologyKey"] for c in constraints]
        assert keys == ["topology.kubernetes.io/zone", "kubernetes.io/hostname"]
        selector = workload.owner["spec"]["selector"]["matchLabels"]
        for constraint in constraints:
            assert constraint["labelSelector"]["matchLabels"] == selector


@pytest.mark.parametrize("values_set", MATRIX)
def test_selectors_select_exactly_their_component(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    """Services, PodDisruptionBudgets and workload selectors each select one component's pods."""
    rendered = rendered_sets[values_set]
    workloads = list(rendered.workloads())
    selectors = [(s, s["spec"]["selector"]) for s in rendered.of_kind("Service")]
    selectors += [
        (d, d["spec"]["selector"]["matchLabels"])
        for kind in ("PodDisruptionBudget", "Deployment", "StatefulSet")
        for d in rendered.of_kind(kind)
    ]
    for owner, selector in selectors:
        selected = {w.component for w in workloads if selects(selector, w.labels)}
        assert selected == {owner["metadata"]["labels"]["app.kubernetes.io/component"]}, (
            f"{owner['kind']}/{owner['metadata']['name']} selects {selected}"
        )


@pytest.mark.parametrize("values_set", MATRIX)
def test_services_target_named_container_ports(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    for service in rendered.of_kind("Service"):
        component = service["metadata"]["labels"]["app.kubernetes.io/component"]
        containers = rendered.workload(component).containers()
        port_names = {port["name"] for container in containers for port in container["ports"]}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in port_names
        assert service["spec"]["type"] == "ClusterIP"


@pytest.mark.parametrize("values_set", [name for name in MATRIX if redis_enabled(name)])
def test_redis_network_policy_admits_only_the_services(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    policy = rendered.get("NetworkPolicy", f"{fullname(values_set)}-redis")
    selector = policy["spec"]["podSelector"]["matchLabels"]
    workloads = list(rendered.workloads())
    assert {w.component for w in workloads if selects(selector, w.labels)} == {"redis"}
    admitted = {w.component for w in workloads if ingress_admits(policy, w.labels, 6379)}
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    if cluster_mode(values_set):
        # The services and the create Job on the client port, the nodes on both ports
        # (replication, and the cluster bus); the nodes reach each other and DNS only.
        assert admitted == {"inventory", "checkout", "redis-cluster-init", "redis"}
        bus = {w.component for w in workloads if ingress_admits(policy, w.labels, 16379)}
        assert bus == {"redis"}
        (to_nodes, dns) = policy["spec"]["egress"]
        assert selects(
            to_nodes["to"][0]["podSelector"]["matchLabels"], rendered.workload("redis").labels
        )
        assert [p["port"] for p in to_nodes["ports"]] == [6379, 16379]
        assert "to" not in dns and {p["port"] for p in dns["ports"]} == {53}
        job = rendered.get("NetworkPolicy", f"{fullname(values_set)}-redis-cluster-init")["spec"]
        assert job["ingress"] == []
        assert selects(job["egress"][0]["to"][0]["podSelector"]["matchLabels"],
                       rendered.workload("redis").labels)  # fmt: skip
        assert job["egress"][0]["ports"] == [{"port": 6379, "protocol": "TCP"}]
        return
    if not sentinel_mode(values_set):
        # Not the helm test pod either: the smoke script talks HTTP to the services only.
        assert admitted == {"inventory", "checkout"}
        assert policy["spec"]["egress"] == []  # Redis opens no connection
        return
    # Sentinel mode: the services ask the Sentinels, then use the master; the Redis pods
    # replicate from each other and their Sentinels talk to each other and to every Redis.
    port = sentinel_port(values_set)
    admitted_sentinel = {w.component for w in workloads if ingress_admits(policy, w.labels, port)}
    assert admitted == admitted_sentinel == {"inventory", "checkout", "redis"}
    (to_redis, dns) = policy["spec"]["egress"]
    assert selects(
        to_redis["to"][0]["podSelector"]["matchLabels"], rendered.workload("redis").labels
    )
    assert to_redis["ports"] == [
        {"port": 6379, "protocol": "TCP"},
        {"port": port, "protocol": "TCP"},
    ]
    assert "to" not in dns  # Sentinel resolves the pods' names
    assert {p["port"] for p in dns["ports"]} == {53}


@pytest.mark.parametrize("values_set", [name for name in MATRIX if network_policies_enabled(name)])
def test_service_network_policies(rendered_sets: dict[str, Rendered], values_set: str) -> None:
    rendered = rendered_sets[values_set]
    allow_external = values_of(values_set)["networkPolicy"].get("allowExternal", True)
    workloads = list(rendered.workloads())
    for component in SERVICES:
        policy = rendered.get("NetworkPolicy", f"{fullname(values_set)}-{component}")
        selector = policy["spec"]["podSelector"]["matchLabels"]
        assert {w.component for w in workloads if selects(selector, w.labels)} == {component}
        (container,) = rendered.workload(component).containers()
        port = container["ports"][0]["containerPort"]
        admitted = {w.component for w in workloads if ingress_admits(policy, w.labels, port)}
        everyone = {w.component for w in workloads}
        # allowExternal=false: only labelled clients, such as the helm test pod, and the
        # load generator when it runs.
        clients = (
            {"smoke-test", "loadgenerator"} if loadgenerator_enabled(values_set) else {"smoke-test"}
        )
        assert admitted == (everyone if allow_external else clients)
        egress = policy["spec"]["egress"]
        assert {"port": 53, "protocol": "UDP"} in egress[1]["ports"]
        if redis_enabled(values_set):
            redis_selector = egress[0]["to"][0]["podSelector"]["matchLabels"]
            assert selects(redis_selector, rendered.workload("redis").labels)
            expected = [{"port": 6379, "protocol": "TCP"}]
            if sentinel_mode(values_set):
                expected.append({"port": sentinel_port(values_set), "protocol": "TCP"})
            assert egress[0]["ports"] == expected
        else:
            # The managed Redis' port, and those of its seed nodes or Sentinels.
            external = values_of(values_set)["externalRedis"]
            addresses = external.get("cluster", {}).get("nodes", []) + external.get(
                "sentinel", {}
            ).get("sentinels", [])
            ports = [external.get("port", 6379)]
            ports += [int(a.rsplit(":", 1)[1]) for a in addresses]
            expected_ports = [{"port": p, "protocol": "TCP"} for p in dict.fromkeys(ports)]
            assert egress[0]["ports"] == expected_ports


@pytest.mark.parametrize("values_set", [name for name in MATRIX if network_policies_enabled(name)])
def test_network_policies_cover_every_workload(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    """With networkPolicy.enabled every long-running pod is selected by a NetworkPolicy."""
    rendered = rendered_sets[values_set]
    policies = rendered.of_kind("NetworkPolicy")
    for workload in rendered.workloads():
        if workload.owner["kind"] == "Pod":
            continue  # the helm test pod, which runs to completion
        covering = [
            p for p in policies if selects(p["spec"]["podSelector"]["matchLabels"], workload.labels)
        ]
        assert len(covering) == 1, workload.name


def test_service_network_policies_are_opt_in(rendered_sets: dict[str, Rendered]) -> None:
    names = {p["metadata"]["name"] for p in rendered_sets["defaults"].of_kind("NetworkPolicy")}
    assert names == {f"{FULLNAME}-redis"}


@pytest.mark.parametrize("values_set", MATRIX)
def test_secrets_reach_pods_only_through_secret_key_refs(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    rendered = rendered_sets[values_set]
    secret_values = rendered.secret_values()
    plain_values = [
        value for cm in rendered.of_kind("ConfigMap") for value in (cm.get("data") or {}).values()
    ]
    for workload in rendered.workloads():
        for container in workload.containers():
            for env in container.get("env", []):
                where = f"{workload.name} {env['name']}"
                if "value" in env:
                    plain_values.append(env["value"])
                if env["name"] in SECRET_ENV and "value" in env:
                    assert env["name"] == "REDIS_URL", where
                    assert env["value"] == redis_url_template(values_set), where
                elif env["name"] in SECRET_ENV:
                    assert set(env["valueFrom"]) == {"secretKeyRef"}, where
            args = container.get("command", []) + container.get("args", [])
            plain_values.extend(args)
    for value in plain_values:
        for secret in secret_values:
            assert secret not in value, "a Secret's value appears in plain text"


@pytest.mark.parametrize("values_set", MATRIX)
def test_secret_key_refs_name_existing_keys(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    """Every secretKeyRef names a rendered Secret and one of its keys, or a Secret the
    operator manages (secrets.existingSecret, externalRedis.existingSecret, extraEnv)."""
    rendered = rendered_sets[values_set]
    values = values_of(values_set)
    managed = {
        values.get("secrets", {}).get("existingSecret"),
        values.get("externalRedis", {}).get("existingSecret"),
        "payments",  # customized's extraEnv
    }
    secrets = {s["metadata"]["name"]: set(s["data"]) for s in rendered.of_kind("Secret")}
    for workload in rendered.workloads():
        for container in workload.containers():
            for env in container.get("env", []):
                ref = env.get("valueFrom", {}).get("secretKeyRef")
                if ref is None or ref["name"] in managed:
                    continue
                assert ref["key"] in secrets.get(ref["name"], set()), f"{workload.name} {ref}"


@pytest.mark.parametrize("values_set", MATRIX)
def test_services_read_only_settings_that_exist(
    rendered_sets: dict[str, Rendered], values_set: str
) -> None:
    """Every variable the chart gives the services is a field of cartlib.settings.Settings
    (a misspelt name would be silently ignored: extra="ignore")."""
    fields = {name.upper() for name in Settings.model_fields}
    rendered = rendered_sets[values_set]
    for component in SERVICES:
        extra = {e["name"] for e in values_of(values_set).get(component, {}).get("extraEnv", [])}
        configmap = rendered.get("ConfigMap", f"{fullname(values_set)}-{component}")
        (container,) = rendered.workload(component).containers()
        names = set(configmap["data"]) | {env["name"] for env in container["env"]}
        unknown = names - fields - extra
        assert unknown == set(), f"{component}: not Settings fields: {unknown}"
        assert {"CART_TOKEN_SECRET", "HOST", "PORT"} <= names
        architecture = external_architecture(values_set)
        if sentinel_mode(values_set) or architecture == "sentinel":
            sentinel = {"REDIS_SENTINELS", "REDIS_SENTINEL_MASTER", "REDIS_SENTINEL_PASSWORD"}
            assert sentinel | {"REDIS_PASSWORD"} <= names
            assert "REDIS_CLUSTER_NODES" not in names
        elif cluster_mode(values_set) or architecture == "cluster":
            assert {"REDIS_CLUSTER_NODES", "REDIS_PASSWORD"} <= names
            assert "REDIS_SENTINELS" not in names
        else:
            assert "REDIS_URL" in names
            assert not names & {"REDIS_SENTINELS", "REDIS_CLUSTER_NODES"}
        if sentinel_mode(values_set) or cluster_mode(values_set):
            assert "REDIS_URL" not in names  # one way to Redis: the Sentinels or the nodes
        port = int(configmap["data"]["PORT"])
        assert container["ports"][0]["containerPort"] == port
        refs = [source["configMapRef"]["name"] for source in container["envFrom"][:1]]
        assert refs == [configmap["metadata"]["name"]]


def test_admin_api_can_be_turned_off(rendered_sets: dict[str, Rendered]) -> None:
    for values_set, expected in (("defaults", True), ("existing-secret", False)):
        for component in SERVICES:
            (container,) = rendered_sets[values_set].workload(component).containers()
            assert ("ADMIN_TOKEN" in {e["name"] for e in container["env"]}) is expected


def test_generated_secret_is_random_long_and_kept_by_lookup(render: Render) -> None:
    """The values are random (two renders differ), long enough for cartlib.settings, and
    an upgrade keeps them: the template reads the Secret already in the cluster with
    `lookup` (which `helm template` cannot exercise: it has no cluster)."""
    first, second = (render([], {"commonLabels.render": f"r{i}"}) for i in (1, 2))
    data = [first.get("Secret", FULLNAME)["data"], second.get("Secret", FULLNAME)["data"]]
    assert set(data[0]) == {"cart-token-secret", "admin-token", "redis-password"}
    for key in data[0]:
        decoded = base64.b64decode(data[0][key]).decode()
        assert len(decoded) >= 32 and decoded.isalnum()
        assert data[0][key] != data[1][key]
    helpers = (CHART_DIR / "templates" / "_secrets.tpl").read_text()
    assert 'lookup "v1" "Secret" (include "storefront.namespace" .context)' in helpers
    secret_template = (CHART_DIR / "templates" / "secret.yaml").read_text()
    assert secret_template.count('include "storefront.secretValue"') == 4


def test_existing_secret_replaces_the_generated_one(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["existing-secret"]
    assert rendered.of_kind("Secret") == []
    refs = {
        env["name"]: env["valueFrom"]["secretKeyRef"]
        for workload in rendered.workloads()
        for container in workload.containers()
        for env in container.get("env", [])
        if "valueFrom" in env
    }
    assert refs["CART_TOKEN_SECRET"] == {"name": "shop-secrets", "key": "token-key"}
    assert refs["REDIS_PASSWORD"] == {"name": "shop-secrets", "key": "redis-pass"}
    assert refs["REDISCLI_AUTH"] == {"name": "shop-secrets", "key": "redis-pass"}


def test_external_redis_url_lives_in_a_secret(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["external-redis"]
    url = values_of("external-redis")["externalRedis"]["url"]
    secret = rendered.get("Secret", f"{FULLNAME}-external-redis")
    assert base64.b64decode(secret["data"]["redis-url"]).decode() == url
    assert "redis-password" not in rendered.get("Secret", FULLNAME)["data"]
    assert {w.component for w in rendered.workloads()} == {"inventory", "checkout", "smoke-test"}
    for component in SERVICES:
        (container,) = rendered.workload(component).containers()
        env = {e["name"]: e for e in container["env"]}
        assert "REDIS_PASSWORD" not in env
        assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": f"{FULLNAME}-external-redis",
            "key": "redis-url",
        }
    managed = rendered_sets["external-redis-secret"]
    assert managed.find("Secret", f"{FULLNAME}-external-redis") is None
    (container,) = managed.workload("checkout").containers()
    env = {e["name"]: e for e in container["env"]}
    assert env["REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "managed-redis", "key": "url"}


def test_redis_statefulset(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["defaults"]
    statefulset = rendered.get("StatefulSet", f"{FULLNAME}-redis")
    spec = statefulset["spec"]
    assert spec["replicas"] == 1
    headless = rendered.get("Service", spec["serviceName"])
    assert headless["spec"]["clusterIP"] == "None"
    (container,) = spec["template"]["spec"]["containers"]
    assert container["command"] == ["redis-server"]
    assert container["args"] == ["/etc/redis/redis.conf", "--requirepass", "$(REDIS_PASSWORD)"]
    (claim,) = spec["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == "data"
    assert claim["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in claim["spec"]  # the cluster's default class
    mounts = {mount["name"]: mount["mountPath"] for mount in container["volumeMounts"]}
    assert mounts["data"] == "/data"
    config = rendered.get("ConfigMap", f"{FULLNAME}-redis")["data"]["redis.conf"].splitlines()
    for line in ("appendonly yes", "appendfsync everysec", "dir /data", "protected-mode yes"):
        assert line in config
    assert not any(line.startswith("requirepass") for line in config)
    disabled = [line.split()[1] for line in config if line.startswith("rename-command")]
    assert disabled == ["FLUSHALL", "FLUSHDB", "CONFIG", "DEBUG", "KEYS"]
    assert all(line.endswith(' ""') for line in config if line.startswith("rename-command"))


def test_redis_storage_class_and_emptydir(rendered_sets: dict[str, Rendered]) -> None:
    statefulset = rendered_sets["storage-class"].get("StatefulSet", f"{FULLNAME}-redis")
    (claim,) = statefulset["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == ""  # "-": no dynamic provisioning
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]
    assert claim["metadata"]["annotations"] == {"example.com/backup": "daily"}
    # Only selector labels: volumeClaimTemplates cannot change, the chart version does.
    assert "helm.sh/chart" not in claim["metadata"]["labels"]
    unpersisted = rendered_sets["customized"].get("StatefulSet", "shop-store-redis")
    assert "volumeClaimTemplates" not in unpersisted["spec"]
    volumes = {v["name"]: v for v in unpersisted["spec"]["template"]["spec"]["volumes"]}
    assert volumes["data"] == {"name": "data", "emptyDir": {}}


def test_schema_never_lets_redis_disable_a_command_the_services_use() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    items = schema["properties"]["redis"]["properties"]["disabledCommands"]["items"]
    protected = set(items["not"]["enum"])
    scripts = (REPO_ROOT / "cartlib" / "store" / "scripts").glob("*.lua")
    called = {
        command.upper()
        for script in scripts
        for command in re.findall(r"redis\.call\(\s*['\"](\w+)['\"]", script.read_text())
    }
    assert called, "no redis.call found in cartlib/store/scripts"
    assert called | {"EVAL", "EVALSHA", "SCRIPT", "PING", "AUTH"} <= protected
    # Outside the scripts: WAIT (paid orders with Sentinel or a cluster), and the cluster
    # client's CLUSTER SLOTS and COMMAND (redis-py reads the key positions at its start).
    assert {"WAIT", "CLUSTER", "COMMAND"} <= protected


def test_checksums_roll_pods_when_their_config_changes(render: Render) -> None:
    def checksums(rendered: Rendered, component: str) -> dict[str, str]:
        annotations = rendered.workload(component).owner["spec"]["template"]["metadata"]
        return {k: v for k, v in annotations["annotations"].items() if k.startswith("checksum/")}

    base = render()
    again = render([], {"tests.resources.limits.cpu": "400m"})
    for component in (*SERVICES, "redis"):
        # Deterministic even though the generated Secret is random on every render.
        assert checksums(base, component) == checksums(again, component)
    log_level = render([], {"config.logLevel": "debug"})
    for component in SERVICES:
        changed = checksums(log_level, component)
        assert changed["checksum/config"] != checksums(base, component)["checksum/config"]
        assert changed["checksum/secret"] == checksums(base, component)["checksum/secret"]
    # A service's own setting rolls that service only.
    concurrency = render([], {"inventory.webConcurrency": "2"})
    assert checksums(concurrency, "inventory") != checksums(base, "inventory")
    assert checksums(concurrency, "checkout") == checksums(base, "checkout")
    # What the pods do not read leaves them be: the ConfigMap's annotations.
    annotated = render([], {"commonAnnotations.team": "shop"})
    for component in SERVICES:
        assert checksums(annotated, component) == checksums(base, component)
    maxmemory = render([], {"redis.maxmemory": "200mb"})
    assert (
        checksums(maxmemory, "redis")["checksum/config"]
        != checksums(base, "redis")["checksum/config"]
    )
    external = VALUES_DIR / "external-redis.yaml"
    url_a = render([external])
    url_b = render([external], {"externalRedis.url": "rediss://:other@redis.example.com:6380/0"})
    for component in SERVICES:
        assert (
            checksums(url_a, component)["checksum/secret"]
            != checksums(url_b, component)["checksum/secret"]
        )


def test_helm_test_pod_runs_the_smoke_script(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["defaults"]
    pod = rendered.get("Pod", f"{FULLNAME}-smoke-test")
    configmap = rendered.get("ConfigMap", f"{FULLNAME}-smoke-test")
    for hook in (pod, configmap):
        annotations = hook["metadata"]["annotations"]
        assert annotations["helm.sh/hook"] == "test"
        assert annotations["helm.sh/hook-delete-policy"] == "before-hook-creation,hook-succeeded"
    smoke = CHART_DIR / "files" / "smoke.py"
    assert configmap["data"]["smoke.py"] == smoke.read_text().rstrip("\n")
    (container,) = pod["spec"]["containers"]
    (checkout,) = rendered.workload("checkout").containers()
    assert container["image"] == checkout["image"]
    urls = {
        component: "http://{name}:{port}".format(
            name=service["metadata"]["name"], port=service["spec"]["ports"][0]["port"]
        )
        for component in SERVICES
        for service in [rendered.get("Service", f"{FULLNAME}-{component}")]
    }
    assert container["command"] == [
        "python", "/smoke/smoke.py",
        "--inventory", urls["inventory"],
        "--checkout", urls["checkout"],
    ]  # fmt: skip
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["metadata"]["labels"][f"{FULLNAME}-client"] == "true"


def test_images_default_to_the_app_version(rendered_sets: dict[str, Rendered]) -> None:
    images = {
        component: rendered_sets["defaults"].workload(component).containers()[0]["image"]
        for component in (*SERVICES, "redis")
    }
    assert images == {
        "inventory": "storefront-inventory:0.1.0",
        "checkout": "storefront-checkout:0.1.0",
        "redis": "redis:7.2.7",
    }
    customized = rendered_sets["customized"]
    (inventory,) = customized.workload("inventory").containers()
    digest = values_of("customized")["inventory"]["image"]["digest"]
    assert inventory["image"] == f"registry.example.com/shop/storefront-inventory@{digest}"
    assert customized.workload("checkout").containers()[0]["image"] == (
        "storefront-checkout:0.1.0-rc.1"
    )
    assert customized.workload("redis").containers()[0]["image"] == "storefront-redis:7"
    for workload in customized.workloads():
        assert workload.spec["imagePullSecrets"] == [{"name": "regcred"}]


def test_matrix_covers_the_cases_the_issue_names() -> None:
    assert {"defaults", "external-redis", "network-policies", "autoscaling"} <= set(MATRIX)
    assert "existing-secret" in MATRIX
    # Issue 14: the in-cluster Redis Cluster, a managed cluster and an external Sentinel setup.
    assert {"redis-cluster", "external-redis-cluster", "external-redis-sentinel"} <= set(MATRIX)


def test_loadgenerator_is_opt_in(rendered_sets: dict[str, Rendered]) -> None:
    for values_set in MATRIX:
        components = {
            doc["metadata"]["labels"]["app.kubernetes.io/component"]
            for doc in rendered_sets[values_set].documents
        }
        assert ("loadgenerator" in components) is loadgenerator_enabled(values_set), values_set
    assert "loadgenerator" in MATRIX


def service_urls(rendered: Rendered) -> dict[str, str]:
    """http://<Service name>:<Service port> of inventory and checkout."""
    return {
        component: "http://{name}:{port}".format(
            name=service["metadata"]["name"], port=service["spec"]["ports"][0]["port"]
        )
        for component in SERVICES
        for service in [rendered.get("Service", f"{FULLNAME}-{component}")]
    }


def test_loadgenerator_deployment(rendered_sets: dict[str, Rendered]) -> None:
    rendered = rendered_sets["loadgenerator"]
    values = values_of("loadgenerator")["loadgenerator"]
    deployment = rendered.get("Deployment", f"{FULLNAME}-loadgenerator")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    workload = rendered.workload("loadgenerator")
    spec = workload.spec
    account = rendered.get("ServiceAccount", spec["serviceAccountName"])
    assert account["metadata"]["labels"]["app.kubernetes.io/component"] == "loadgenerator"
    assert account["automountServiceAccountToken"] is False
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "fsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    (container,) = workload.containers()
    assert container["securityContext"] == {
        "runAsNonRoot": True,
        "runAsUser": 10001,
        "runAsGroup": 10001,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    assert container["volumeMounts"] == [{"name": "tmp", "mountPath": "/tmp"}]
    assert spec["volumes"] == [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    assert "ports" not in container  # headless: no web UI, nothing to reach
    assert container["image"] == "registry.example.com/shop/storefront-loadgenerator:0.1.0-rc.1"
    urls = service_urls(rendered)
    assert urls["checkout"].endswith(":80")  # the set's non-default checkout Service port
    env = {item["name"]: item.get("value") for item in container["env"]}
    assert env == {
        "LOCUST_HOST": urls["inventory"],
        "CHECKOUT_URL": urls["checkout"],
        "LOCUST_USERS": str(values["users"]),
        "LOCUST_SPAWN_RATE": str(values["spawnRate"]),
        "LOADGEN_CHECKOUT": "false",
        "LOCUST_LOGLEVEL": "WARNING",
    }


def test_loadgenerator_defaults(render: Render) -> None:
    rendered = render(set_values={"loadgenerator.enabled": "true"})
    (container,) = rendered.workload("loadgenerator").containers()
    assert container["image"] == "storefront-loadgenerator:0.1.0"
    env = {item["name"]: item["value"] for item in container["env"]}
    assert env["LOCUST_HOST"] == f"http://{FULLNAME}-inventory:8001"
    assert env["CHECKOUT_URL"] == f"http://{FULLNAME}-checkout:8002"
    assert env["LOADGEN_CHECKOUT"] == "true"
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    # No NetworkPolicy of its own unless networkPolicy.enabled.
    assert rendered.find("NetworkPolicy", f"{FULLNAME}-loadgenerator") is None


def test_loadgenerator_network_policies(rendered_sets: dict[str, Rendered]) -> None:
    """The services admit the load generator at their ports, Redis does not; it reaches the
    service pods' ports and DNS only, and nothing reaches it."""
    rendered = rendered_sets["loadgenerator"]
    labels = rendered.workload("loadgenerator").labels
    ports = {
        component: rendered.workload(component).containers()[0]["ports"][0]["containerPort"]
        for component in SERVICES
    }
    for component in SERVICES:
        policy = rendered.get("NetworkPolicy", f"{FULLNAME}-{component}")
        assert ingress_admits(policy, labels, ports[component]), component
        assert not ingress_admits(policy, labels, 6379), component
    assert not ingress_admits(rendered.get("NetworkPolicy", f"{FULLNAME}-redis"), labels, 6379)
    own = rendered.get("NetworkPolicy", f"{FULLNAME}-loadgenerator")
    assert (
        own["spec"]["podSelector"]["matchLabels"]
        == (
            rendered.get("Deployment", f"{FULLNAME}-loadgenerator")["spec"]["selector"][
                "matchLabels"
            ]
        )
    )
    assert own["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert own["spec"]["ingress"] == []
    *to_services, dns = own["spec"]["egress"]
    assert dns == {"ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]}
    reached = {}
    for rule in to_services:
        (peer,) = rule["to"]
        (port,) = rule["ports"]
        (component,) = [
            w.component
            for w in rendered.workloads()
            if selects(peer["podSelector"]["matchLabels"], w.labels)
        ]
        reached[component] = port
    assert reached == {c: {"port": ports[c], "protocol": "TCP"} for c in SERVICES}
