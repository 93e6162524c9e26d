"""The chart's cluster mode, as rendered, run in Docker the way a cluster would run it.

Six "pods" on a user-defined network: each is a holder container carrying the pod's stable
DNS name as a network alias (`<pod>.<headless>.<namespace>.svc.cluster.local`, what the
headless Service with publishNotReadyAddresses gives), and the rendered Redis container
joined to its network namespace with its command line and arguments (Kubernetes'
`$(VAR)` expansion applied), environment (the rendered Secret's values where a secretKeyRef
points, the pod name where the downward API does), ConfigMaps mounted read-only, user,
read-only root, no capabilities, tmpfs for emptyDirs, and a host folder per pod for its
volume claim (kept when the pod is replaced, as a PersistentVolumeClaim is). The postStart
hook runs when the container has started and the readiness probe is polled, as the kubelet
does. The create Job runs as its rendered pod: command, environment and mounts.

The local storefront-redis:7 image has no shell; the official image the chart defaults to
has one. The containers get this machine's dash as /bin/sh and its sleep, read-only, which
is all the scripts need besides redis-cli and redis-server.

The tests are the steps of one story on one deployment, in order. What is proved: the
create Job forms a cluster of three masters with a replica each,
covering every slot, whose nodes send clients their DNS names; the Job run again leaves
node ids, roles, slots and epochs as they were; a master pod replaced with a new IP (its
volume kept) rejoins under its node id at the new address and the data stays readable;
every pod replaced at once, all with new IPs, finds the others again (the postStart's
CLUSTER MEET: without it no node reaches any other); an emptied pod (its volume lost) is
added back as a replica by the Job, which still creates nothing; the services, from the
local images (`make images`) with the rendered environment, pass the `helm test` smoke
script. Timings are printed (pytest -s), never asserted.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests._redis import REDIS7_IMAGE, require_docker
from tests._unavailable import unavailable
from tests.chart._helm import FULLNAME, NAMESPACE, VALUES_DIR, Rendered, Workload, run
from tests.chart.conftest import Render

pytestmark = pytest.mark.docker

STATEFULSET = f"{FULLNAME}-redis"
DOMAIN = f"{STATEFULSET}-headless.{NAMESPACE}.svc.cluster.local"
NODES = 6
TIMEOUT = 60.0
HOST_TOOLS = {"/bin/sh": "dash", "/usr/bin/sleep": "sleep"}
SERVICE_IMAGES = {
    "inventory": os.environ.get("STOREFRONT_INVENTORY_IMAGE", "storefront-inventory:dev"),
    "checkout": os.environ.get("STOREFRONT_CHECKOUT_IMAGE", "storefront-checkout:dev"),
}
VARIABLE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes' `$(NAME)` expansion in command and args (unknown names stay as they are)."""
    return VARIABLE.sub(lambda m: env.get(m.group(1), m.group(0)), value)


@dataclass
class Pod:
    """One emulated pod: its name, DNS name, holder and Redis containers, and volume."""

    name: str
    fqdn: str
    holder: str
    redis: str

    def cli(self, *command: str, check: bool = True) -> str:
        """redis-cli in the pod's Redis container (REDISCLI_AUTH is in its environment)."""
        return run("docker", "exec", self.redis, "redis-cli", *command, check=check).stdout.strip()

    def info(self, field: str) -> str:
        for line in self.cli("CLUSTER", "INFO", check=False).splitlines():
            if line.startswith(f"{field}:"):
                return line.split(":", 1)[1].strip()
        return ""

    def node_id(self) -> str:
        return self.cli("CLUSTER", "MYID")


class Deployment:
    """Starts and deletes emulated pods of the rendered StatefulSet, and runs its Job."""

    def __init__(self, rendered: Rendered, workdir: Path, tools: dict[str, str]) -> None:
        self.rendered = rendered
        self.workload: Workload = rendered.workload("redis")
        self.job: Workload = rendered.workload("redis-cluster-init")
        self.workdir = workdir
        self.network = f"storefront-cluster-{uuid.uuid4().hex[:8]}"
        self.tools = [f"--volume={path}:{target}:ro" for target, path in tools.items()]
        self.secret = {
            key: base64.b64decode(value).decode()
            for key, value in rendered.get("Secret", FULLNAME)["data"].items()
        }
        self.config_maps = self._config_map_dirs()
        self.created: list[str] = []
        self.jobs = 0
        self.pods: list[Pod] = []
        run("docker", "network", "create", self.network)

    def _config_map_dirs(self) -> dict[str, Path]:
        """Each configMap volume of the pods (the StatefulSet's and the Job's) as a folder."""
        dirs = {}
        for volume in self.workload.spec["volumes"] + self.job.spec["volumes"]:
            if "configMap" not in volume or volume["name"] in dirs:
                continue
            folder = self.workdir / volume["name"]
            folder.mkdir()
            data = self.rendered.get("ConfigMap", volume["configMap"]["name"])["data"]
            for filename, text in data.items():
                (folder / filename).write_text(text)
                (folder / filename).chmod(0o644)
            folder.chmod(0o755)
            dirs[volume["name"]] = folder
        return dirs

    def env(self, container: dict[str, Any], pod: str) -> dict[str, str]:
        values = {}
        for item in container.get("env", []):
            source = item.get("valueFrom", {})
            if "secretKeyRef" in source:
                values[item["name"]] = self.secret[source["secretKeyRef"]["key"]]
            elif "fieldRef" in source:
                assert source["fieldRef"]["fieldPath"] == "metadata.name"
                values[item["name"]] = pod
            else:
                values[item["name"]] = expand(item["value"], values)
        return values

    def _mounts(
        self, workload: Workload, container: dict[str, Any], volume: Path | None
    ) -> list[str]:
        uid = container["securityContext"]["runAsUser"]
        fs_group = workload.spec["securityContext"]["fsGroup"]
        mounts = []
        for mount in container["volumeMounts"]:
            if mount["name"] in self.config_maps:
                mounts.append(f"--volume={self.config_maps[mount['name']]}:{mount['mountPath']}:ro")
            elif mount["name"] == "data" and volume is not None:
                mounts.append(f"--volume={volume}:{mount['mountPath']}")
            else:  # emptyDirs
                mounts.append(f"--tmpfs={mount['mountPath']}:uid={uid},gid={fs_group},mode=0770")
        return mounts

    def _security(self, workload: Workload, container: dict[str, Any]) -> list[str]:
        context = container["securityContext"]
        return [
            "--user", f"{context['runAsUser']}:{context['runAsGroup']}",
            "--group-add", str(workload.spec["securityContext"]["fsGroup"]),
            "--read-only", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        ]  # fmt: skip

    def volume(self, ordinal: int) -> Path:
        """The pod's claim: a folder that outlives the pod (group-writable for fsGroup 999)."""
        folder = self.workdir / f"data-{ordinal}"
        if not folder.exists():
            folder.mkdir()
            os.chown(folder, 0, self.workload.spec["securityContext"]["fsGroup"])
            folder.chmod(0o770)
        return folder

    def start_pod(self, ordinal: int) -> Pod:
        """The pod's containers, started; then its postStart hook, as the kubelet runs it.
        Not waited for: readiness needs the whole cluster."""
        name = f"{STATEFULSET}-{ordinal}"
        fqdn = f"{name}.{DOMAIN}"
        holder = f"{self.network}-{ordinal}-{uuid.uuid4().hex[:4]}"
        self._run(
            "--name", holder, "--network", self.network, "--network-alias", fqdn,
            "--hostname", name, "--user", "999:999", "--read-only", "--cap-drop", "ALL",
            *self.tools, REDIS7_IMAGE, "sleep", "infinity",
        )  # fmt: skip
        (container,) = self.workload.containers()
        env = self.env(container, name)
        args = [expand(arg, env) for arg in container["command"] + container.get("args", [])]
        docker_name = f"{holder}-redis"
        self._run(
            "--name", docker_name, f"--network=container:{holder}",
            *self._security(self.workload, container), *self.tools,
            *self._mounts(self.workload, container, self.volume(ordinal)),
            *[f"--env={key}={value}" for key, value in env.items()],
            REDIS7_IMAGE, *args,
        )  # fmt: skip
        pod = Pod(name=name, fqdn=fqdn, holder=holder, redis=docker_name)
        post_start = container["lifecycle"]["postStart"]["exec"]["command"]
        result = run("docker", "exec", docker_name, *post_start, check=False)
        assert result.returncode == 0, f"{name} postStart: {result.stderr}"
        return pod

    def start_pods(self, ordinals: range | list[int]) -> list[Pod]:
        return [self.start_pod(ordinal) for ordinal in ordinals]

    def _run(self, *args: str) -> None:
        name = args[args.index("--name") + 1]
        self.created.append(name)
        run("docker", "run", "--detach", *args)

    def ready(self, pod: Pod) -> bool:
        (container,) = self.workload.containers()
        probe = container["readinessProbe"]["exec"]["command"]
        return run("docker", "exec", pod.redis, *probe, check=False).returncode == 0

    def run_job(self) -> subprocess.CompletedProcess[str]:
        """The create Job's pod, run to completion (its rendered command, env and mounts)."""
        (container,) = self.job.containers()
        self.jobs += 1
        name = f"{self.network}-job-{self.jobs}"
        env = self.env(container, name)
        result = run(
            "docker", "run", "--rm", "--name", name, "--network", self.network,
            *self._security(self.job, container), *self.tools,
            *self._mounts(self.job, container, None),
            *[f"--env={key}={value}" for key, value in env.items()],
            REDIS7_IMAGE, *container["command"], *container.get("args", []), check=False,
        )  # fmt: skip
        return result

    def ip(self, pod: Pod) -> str:
        template = f'{{{{(index .NetworkSettings.Networks "{self.network}").IPAddress}}}}'
        return run("docker", "inspect", "--format", template, pod.holder).stdout.strip()

    def take_free_addresses(self, count: int) -> None:
        """Occupy the lowest free addresses, which Docker would hand out next: a new pod gets
        another IP than the one it replaces, as in a cluster."""
        for _ in range(count):
            name = f"{self.network}-squatter-{uuid.uuid4().hex[:4]}"
            self._run("--name", name, "--network", self.network, "--user", "999:999",
                      "--read-only", *self.tools, REDIS7_IMAGE, "sleep", "infinity")  # fmt: skip

    def delete_pod(self, pod: Pod) -> None:
        """The pod is gone (SIGTERM, then removed): its containers and its DNS name; its
        volume folder stays, as a PersistentVolumeClaim does."""
        run("docker", "stop", "--time", "10", pod.redis)
        run("docker", "rm", "--force", pod.redis, pod.holder)

    def logs(self, pods: list[Pod]) -> str:
        out = []
        for pod in pods:
            result = run("docker", "logs", "--tail", "20", pod.redis, check=False)
            out.append(f"--- {pod.name}\n{result.stdout}{result.stderr}")
        return "\n".join(out)

    def start_services(self) -> None:
        """inventory and checkout as the rendered Deployments run them, under their Service
        names (`<fullname>-<service>`)."""
        for service, image in SERVICE_IMAGES.items():
            name = f"{FULLNAME}-{service}"
            (container,) = self.rendered.workload(service).containers()
            config = self.rendered.get("ConfigMap", name)["data"]
            env = {**config, **self.env(container, name)}
            context = container["securityContext"]
            self._run(
                "--name", f"{self.network}-{service}", "--network", self.network,
                "--network-alias", name,
                "--user", f"{context['runAsUser']}:{context['runAsGroup']}",
                "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL",
                "--security-opt", "no-new-privileges",
                *[f"--env={key}={value}" for key, value in env.items()], image,
            )  # fmt: skip

    def smoke(self) -> subprocess.CompletedProcess[str]:
        """The `helm test` Pod's command, in the checkout image with the smoke ConfigMap."""
        pod = self.rendered.get("Pod", f"{FULLNAME}-smoke-test")
        (container,) = pod["spec"]["containers"]
        smoke_dir = self.workdir / "smoke"
        if not smoke_dir.exists():
            smoke_dir.mkdir()
            data = self.rendered.get("ConfigMap", f"{FULLNAME}-smoke-test")["data"]
            (smoke_dir / "smoke.py").write_text(data["smoke.py"])
            (smoke_dir / "smoke.py").chmod(0o644)
            smoke_dir.chmod(0o755)
        return run(
            "docker", "run", "--rm", "--network", self.network, "--read-only",
            "--tmpfs", "/tmp", "--cap-drop", "ALL", "--user", "10001:10001",
            f"--volume={smoke_dir}:/smoke:ro",
            f"--entrypoint={container['command'][0]}",
            SERVICE_IMAGES["checkout"], *container["command"][1:], check=False,
        )  # fmt: skip

    def close(self) -> None:
        subprocess.run(["docker", "rm", "--force", *self.created], capture_output=True)
        subprocess.run(["docker", "network", "rm", self.network], capture_output=True)


def wait_for(
    what: str,
    check: Callable[[], bool],
    timeout: float = TIMEOUT,
    detail: Callable[[], str] = lambda: "",
) -> float:
    """Poll until `check()` is true; the seconds it took. Fails the test after `timeout`,
    with `detail()`."""
    start = time.monotonic()
    while not check():
        if time.monotonic() - start > timeout:
            pytest.fail(f"not within {timeout} s: {what}\n{detail()}")
        time.sleep(0.3)
    return time.monotonic() - start


def topology(pod: Pod) -> dict[str, tuple[str, str, str]]:
    """CLUSTER NODES as `pod` sees it: {node id: (role, master id, slots)}; what must not
    change when the Job runs again (addresses, ping times and link states may)."""
    nodes = {}
    for line in pod.cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        role = "master" if "master" in fields[2] else "replica"
        nodes[fields[0]] = (role, fields[3], " ".join(fields[8:]))
    return nodes


def addresses(pod: Pod) -> dict[str, str]:
    """{node id: `ip:port@bus,hostname`} as `pod` sees the cluster (connected nodes only)."""
    result = {}
    for line in pod.cli("CLUSTER", "NODES").splitlines():
        fields = line.split()
        if fields[7] == "connected" or "myself" in fields[2]:
            result[fields[0]] = fields[1]
    return result


def healthy(pods: list[Pod], masters: int = 3) -> bool:
    """Every node: cluster_state ok, every slot assigned and ok, all nodes known and
    connected, `masters` masters with a replica each."""
    for pod in pods:
        if pod.info("cluster_state") != "ok" or pod.info("cluster_slots_ok") != "16384":
            return False
        if pod.info("cluster_known_nodes") != str(NODES) or len(addresses(pod)) != NODES:
            return False
    roles = topology(pods[0])
    master_ids = {node for node, (role, _, _) in roles.items() if role == "master"}
    replicas_of = [master for role, master, _ in roles.values() if role == "replica"]
    return len(master_ids) == masters and sorted(replicas_of) == sorted(master_ids)


@pytest.fixture(scope="module")
def rendered(render: Render) -> Rendered:
    return render([VALUES_DIR / "redis-cluster.yaml"])


@pytest.fixture(scope="module")
def deployment(
    rendered: Rendered, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Deployment]:
    require_docker(REDIS7_IMAGE)
    tools = {target: shutil.which(tool) or "" for target, tool in HOST_TOOLS.items()}
    missing = [HOST_TOOLS[target] for target, path in tools.items() if not path]
    assert not missing, f"this machine lacks {missing} (Debian's dash and coreutils)"
    deployment = Deployment(rendered, tmp_path_factory.mktemp("cluster"), tools)
    try:
        yield deployment
    finally:
        deployment.close()


def report(what: str, seconds: float) -> None:
    print(f"\ncluster mode in Docker: {what}: {seconds:.1f} s")  # noqa: T201


def formed(deployment: Deployment) -> list[Pod]:
    """The pods of a formed, healthy cluster: the ones the tests before left, or new ones
    formed by the Job when they did not get that far."""
    if not deployment.pods:
        deployment.pods = deployment.start_pods(range(NODES))
        created = deployment.run_job()
        assert created.returncode == 0, created.stdout + created.stderr
    wait_for("the cluster is healthy", lambda: healthy(deployment.pods))
    return deployment.pods


# The tests below run in this order on one deployment (module fixture), each a step of
# one story; each starts from a healthy cluster (`formed`).


def test_the_job_forms_the_cluster_once(deployment: Deployment) -> None:
    pods = deployment.start_pods(range(NODES))
    # Not ready before the Job: no slot is served yet.
    assert not any(deployment.ready(pod) for pod in pods)

    # The Job forms the cluster: three masters, a replica each, every slot.
    before = time.monotonic()
    created = deployment.run_job()
    assert created.returncode == 0, created.stdout + created.stderr
    assert "every node is empty: creating the cluster" in created.stderr
    report("create Job", time.monotonic() - before)
    wait_for("the cluster is healthy", lambda: healthy(pods))
    wait_for("every pod is ready", lambda: all(deployment.ready(pod) for pod in pods))
    deployment.pods = pods
    # Clients are sent the pods' DNS names, which outlive their IPs.
    shards = pods[0].cli("CLUSTER", "SHARDS")
    assert all(f"{pod.fqdn}" in shards for pod in pods)
    assert pods[0].cli("-c", "SET", "sf:order:1", "paid") == "OK"
    for key in range(50):
        assert pods[key % NODES].cli("-c", "SET", f"sf:k{key}", str(key)) == "OK"

    # The Job again (an upgrade): nothing created, nothing reset.
    shape = topology(pods[0])
    epoch = pods[0].info("cluster_current_epoch")
    again = deployment.run_job()
    assert again.returncode == 0, again.stdout + again.stderr
    assert "a cluster exists" in again.stderr and "creating the cluster" not in again.stderr
    assert topology(pods[0]) == shape
    assert pods[0].info("cluster_current_epoch") == epoch


def test_a_master_replaced_with_a_new_ip_rejoins(deployment: Deployment) -> None:
    """A master pod replaced (a node drain, a crash): a new IP, the same volume. It rejoins
    under its node id at its new address (a master still, or a replica if its replica was
    promoted meanwhile); no data is lost."""
    pods = formed(deployment)
    victim = next(p for p in pods if topology(p)[p.node_id()][0] == "master" and p is not pods[0])
    victim_id, old_ip = victim.node_id(), deployment.ip(victim)
    deployment.delete_pod(victim)
    deployment.take_free_addresses(1)
    before = time.monotonic()
    ordinal = pods.index(victim)
    pods[ordinal] = victim = deployment.start_pod(ordinal)
    new_ip = deployment.ip(victim)
    assert new_ip != old_ip and victim.node_id() == victim_id
    wait_for("rejoined", lambda: healthy(pods), detail=lambda: pods[0].cli("CLUSTER", "NODES"))
    report("one master replaced -> healthy", time.monotonic() - before)
    # The peers reach it at its new IP (its own view of itself is not what they use).
    seen = {p.name: addresses(p)[victim_id] for p in pods if p is not victim}
    assert all(a.startswith(f"{new_ip}:6379@16379,{victim.fqdn}") for a in seen.values()), seen
    assert pods[1].cli("-c", "GET", "sf:order:1") == "paid"


def test_every_pod_replaced_at_once_with_new_ips_finds_the_others(deployment: Deployment) -> None:
    """A node reboot: every nodes.conf names only old addresses; the postStart meets the
    peers at their new ones (without it no node reaches any other)."""
    pods = formed(deployment)
    ids = {pod.name: pod.node_id() for pod in pods}
    for pod in pods:
        deployment.delete_pod(pod)
    deployment.pods = []
    deployment.take_free_addresses(NODES)
    before = time.monotonic()
    pods = deployment.start_pods(range(NODES))
    wait_for("every pod found the others", lambda: healthy(pods))
    report("all six replaced -> healthy", time.monotonic() - before)
    deployment.pods = pods
    assert {pod.name: pod.node_id() for pod in pods} == ids
    wait_for("every pod is ready", lambda: all(deployment.ready(pod) for pod in pods))
    assert all(pods[3].cli("-c", "GET", f"sf:k{key}") == str(key) for key in range(50))


def test_a_pod_that_lost_its_volume_is_added_back_by_the_job(deployment: Deployment) -> None:
    """It comes back as an empty node outside the cluster; the Job (the next upgrade) adds
    it as a replica, forgets the node id it had, and creates nothing."""
    pods = formed(deployment)
    empty = pods[5]
    replaced_id = empty.node_id()
    deployment.delete_pod(empty)
    shutil.rmtree(deployment.volume(5))
    pods[5] = empty = deployment.start_pod(5)
    assert empty.info("cluster_known_nodes") == "1" and empty.node_id() != replaced_id

    # The others deem the lost node failed (a master: failed over to its replica).
    def failed(pod: Pod, node_id: str) -> bool:
        for line in pod.cli("CLUSTER", "NODES").splitlines():
            fields = line.split()
            if fields[0] == node_id:
                # Failed, or its address answers with another id now (the new pod's IP
                # may be the old one's).
                return bool({"fail", "noaddr"} & set(fields[2].split(",")))
        return False

    wait_for(
        "the others serve every slot without it",
        lambda: all(p.info("cluster_state") == "ok" and failed(p, replaced_id) for p in pods[:5]),
        detail=lambda: "\n".join(f"{p.name}:\n{p.cli('CLUSTER', 'NODES')}" for p in pods),
    )
    before = time.monotonic()
    added = deployment.run_job()
    assert added.returncode == 0, added.stdout + added.stderr
    assert f"adding the empty node {empty.fqdn} as a replica" in added.stderr
    assert f"forgetting {replaced_id}" in added.stderr
    assert "creating the cluster" not in added.stderr
    wait_for("healthy again", lambda: healthy(pods))
    report("lost volume -> re-added by the Job, healthy", time.monotonic() - before)
    assert topology(pods[0])[empty.node_id()][0] == "replica"


def test_services_started_before_the_cluster_reach_it_and_the_smoke_test_passes(
    rendered: Rendered, tmp_path: Path
) -> None:
    """The order on Kubernetes: the services start with the Redis pods, before the Job has
    formed the cluster. inventory and checkout with the rendered environment
    (REDIS_CLUSTER_NODES: the pods' DNS names; REDIS_PASSWORD from the Secret) answer 503
    until then, seed the catalog once it exists, and the `helm test` smoke script passes.
    A deployment of its own, new pods on a new network."""
    for image in SERVICE_IMAGES.values():
        inspected = subprocess.run(["docker", "image", "inspect", image], capture_output=True)
        if inspected.returncode != 0:
            unavailable(f"no local image {image}: run `make images` (tools/build-images.sh)")
    tools = {target: shutil.which(tool) or "" for target, tool in HOST_TOOLS.items()}
    deployment = Deployment(rendered, tmp_path, tools)
    try:
        pods = deployment.start_pods(range(NODES))
        deployment.start_services()
        # No cluster yet: the services run, and answer 503 (readiness fails).
        probe = (
            "import urllib.request, urllib.error\n"
            "try:\n    print(urllib.request.urlopen('http://127.0.0.1:8001/readyz').status)\n"
            "except urllib.error.HTTPError as e:\n    print(e.code)\n"
            "except OSError:\n    print(0)\n"
        )
        inventory = f"{deployment.network}-inventory"

        def readyz() -> str:
            return run("docker", "exec", inventory, "python", "-c", probe, check=False).stdout

        wait_for("inventory answers /readyz", lambda: readyz().strip() not in ("", "0"))
        assert readyz().strip() == "503"
        created = deployment.run_job()
        assert created.returncode == 0, created.stdout + created.stderr
        wait_for("the cluster is healthy", lambda: healthy(pods))
        deadline = time.monotonic() + TIMEOUT
        while (result := deployment.smoke()).returncode != 0:
            # Only while the services' pools reconnect: 503, never a 500.
            assert "HTTP 500" not in result.stderr, result.stderr
            assert time.monotonic() < deadline, result.stdout + result.stderr
            time.sleep(1)
        assert "smoke test passed" in result.stdout
        # The catalog was seeded (the stock slot's master holds it).
        catalog = [p.cli("-c", "HLEN", "sf:{stock}:catalog") for p in pods[:1]]
        assert int(catalog[0]) > 0
    finally:
        deployment.close()
