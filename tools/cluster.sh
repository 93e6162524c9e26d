#!/usr/bin/env bash
# A single-node Kubernetes on this machine, from the binaries tools/build-cluster.sh builds
# (docs/local-cluster.md says what runs and why these versions):
#
#   tools/cluster.sh up        build (cached) and start it; waits until the node is Ready and
#                              CoreDNS and the provisioner answer. Idempotent.
#   tools/cluster.sh down      stop everything `up` started: pods, processes, network, mounts
#   tools/cluster.sh status    exit 0 when it runs and answers
#   tools/cluster.sh load IMAGE[=REF]...
#                              copy images from the Docker engine into the cluster's
#                              containerd (as REF when given): pods see them, no registry
#   tools/cluster.sh load-skaffold-image
#                              skaffold's build hook (profile local-cluster): load $SKAFFOLD_IMAGE
#   tools/cluster.sh redis-image
#                              build storefront-cluster/redis:7 (storefront-redis:7 with a shell)
#   tools/cluster.sh load-redis-image
#                              build it and load it into the cluster (skaffold's deploy hook)
#   tools/cluster.sh env       the KUBECONFIG line to eval
#
# Everything lives under $STOREFRONT_CLUSTER_DIR (default /var/lib/storefront-cluster) and
# $STOREFRONT_CLUSTER_RUN (default /run/storefront-cluster); the node's address is on a dummy
# interface of its own (the port-less bridge sfk8s0, 10.215.0.1), pods get 10.213.0.0/24 on the bridge sfcni0 and
# Services 10.214.0.0/24. Nothing listens on another interface. Root only.
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(dirname "$(dirname "$SCRIPT_PATH")")"
readonly SCRIPT_PATH REPO_ROOT
readonly DATA_DIR="${STOREFRONT_CLUSTER_DIR:-/var/lib/storefront-cluster}"
readonly RUN_DIR="${STOREFRONT_CLUSTER_RUN:-/run/storefront-cluster}"
readonly LOG_DIR="$DATA_DIR/logs"
readonly PKI="$DATA_DIR/pki"
readonly LOCK_FILE="/run/lock/storefront-cluster.lock"

readonly NODE_NAME="storefront-node"
readonly NODE_IF="sfk8s0"
readonly NODE_IP="10.215.0.1"
readonly BRIDGE="sfcni0"
readonly POD_CIDR="10.213.0.0/24"
readonly SERVICE_CIDR="10.214.0.0/24"
readonly KUBERNETES_SERVICE_IP="10.214.0.1"
readonly DNS_SERVICE_IP="10.214.0.10"
readonly CLUSTER_DOMAIN="cluster.local"
readonly APISERVER_PORT=16443
readonly ETCD_CLIENT_PORT=23790
readonly ETCD_PEER_PORT=23800
readonly KUBELET_PORT=20250
readonly CONTAINERD_SOCK="$RUN_DIR/containerd/containerd.sock"
readonly CNI_BIN_DIR="/usr/lib/cni"
readonly CNI_CONF_DIR="$DATA_DIR/cni/net.d"
readonly KUBECONFIG_ADMIN="$DATA_DIR/admin.kubeconfig"
readonly COREDNS_VERSION_LABEL="1.12.4"
readonly PAUSE_IMAGE="storefront-cluster/pause:3.10"
readonly COREDNS_IMAGE="storefront-cluster/coredns:$COREDNS_VERSION_LABEL"
readonly LPP_IMAGE="storefront-cluster/local-path-provisioner:v0.0.30"
readonly BUSYBOX_IMAGE="storefront-cluster/busybox:1.35"
readonly CLUSTER_REDIS_IMAGE="storefront-cluster/redis:7"
# Order matters for `down`: the last started is stopped first.
readonly PROCESSES=(etcd containerd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy kube-router)
readonly DEBS=(containerd runc containernetworking-plugins iptables ipset openssl busybox-static gcc libc6-dev)

BIN=""

log() { printf 'cluster: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# shellcheck source=tools/lib/apt.sh
source "$REPO_ROOT/tools/lib/apt.sh"

kubectl() { "$BIN/hyperkube" kubectl --kubeconfig "$KUBECONFIG_ADMIN" "$@"; }
ctr_k8s() { ctr --address "$CONTAINERD_SOCK" --namespace k8s.io "$@"; }

# wait_until SECONDS WHAT COMMAND...: run COMMAND every half second until it succeeds.
wait_until() {
    local limit=$1 what=$2
    shift 2
    local deadline=$((SECONDS + limit))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || {
            log "$what: not after ${limit}s"
            return 1
        }
        sleep 0.5
    done
}

pid_of() { [[ -f $RUN_DIR/$1.pid ]] && cat "$RUN_DIR/$1.pid"; }

# running NAME: the process `start` recorded still runs, and is that process (its command
# line names NAME and the data dir), not another that got its pid after a reboot.
running() {
    local pid cmdline
    pid="$(pid_of "$1")" || return 1
    [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    [[ $cmdline == *"$1"* && $cmdline == *"$DATA_DIR"* ]]
}

# start NAME COMMAND...: run COMMAND in its own session, logging to $LOG_DIR/NAME.log.
start() {
    local name=$1
    shift
    running "$name" && return 0
    setsid "$@" >>"$LOG_DIR/$name.log" 2>&1 </dev/null 8>&- 9>&- &
    echo $! >"$RUN_DIR/$name.pid"
}

# stop NAME: SIGTERM, then SIGKILL after 15 s; only the process whose pid `start` wrote.
stop() {
    local name=$1 pid deadline
    pid="$(pid_of "$name")" || return 0
    if running "$name"; then
        kill -TERM "$pid" 2>/dev/null || true
        deadline=$((SECONDS + 15))
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$RUN_DIR/$name.pid"
}

install_debs() {
    local deb missing=()
    for deb in "${DEBS[@]}"; do
        dpkg-query -W -f '${Status}' "$deb" 2>/dev/null | grep -q 'install ok installed' || missing+=("$deb")
    done
    ((${#missing[@]} == 0)) && return 0
    for deb in "${missing[@]}"; do apt_install "$deb"; done
}

# ---------------------------------------------------------------------------------------
# Certificates and kubeconfigs (openssl; one CA for everything, like kubeadm's defaults)

cert() { # cert NAME SUBJECT [SANS]
    local name=$1 subject=$2 sans=${3:-}
    [[ -f $PKI/$name.crt ]] && return 0
    local ext="$PKI/$name.ext"
    {
        echo "basicConstraints=CA:FALSE"
        echo "keyUsage=critical,digitalSignature,keyEncipherment"
        if [[ -n $sans ]]; then
            echo "extendedKeyUsage=serverAuth,clientAuth"
            echo "subjectAltName=$sans"
        else
            echo "extendedKeyUsage=clientAuth"
        fi
    } >"$ext"
    openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
    openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr" 2>/dev/null
    openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
        -days 3650 -extfile "$ext" -out "$PKI/$name.crt" 2>/dev/null
    rm -f "$PKI/$name.csr" "$ext"
}

kubeconfig() { # kubeconfig NAME CERT
    local file="$DATA_DIR/$1.kubeconfig" name=$2
    [[ -f $file ]] && return 0
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: storefront
    cluster:
      certificate-authority: $PKI/ca.crt
      server: https://$NODE_IP:$APISERVER_PORT
users:
  - name: $name
    user:
      client-certificate: $PKI/$name.crt
      client-key: $PKI/$name.key
contexts:
  - name: storefront
    context:
      cluster: storefront
      user: $name
current-context: storefront
EOF
}

make_pki() {
    mkdir -p "$PKI"
    chmod 0700 "$PKI"
    if [[ ! -f $PKI/ca.crt ]]; then
        openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
        openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=storefront-cluster-ca" -days 3650 \
            -out "$PKI/ca.crt" 2>/dev/null
    fi
    [[ -f $PKI/sa.key ]] || {
        openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
        openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
    }
    cert apiserver "/CN=kube-apiserver" \
        "IP:$NODE_IP,IP:$KUBERNETES_SERVICE_IP,IP:127.0.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.$CLUSTER_DOMAIN"
    cert apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"
    cert admin "/O=system:masters/CN=storefront-admin"
    cert controller-manager "/CN=system:kube-controller-manager"
    cert scheduler "/CN=system:kube-scheduler"
    cert kube-proxy "/CN=system:kube-proxy"
    # kube-router: its own user, given only upstream's ClusterRole (kube_router_rbac).
    cert kube-router "/CN=kube-router"
    cert kubelet "/O=system:nodes/CN=system:node:$NODE_NAME"
    cert kubelet-serving "/CN=$NODE_NAME" "IP:$NODE_IP,DNS:$NODE_NAME"
    kubeconfig admin admin
    kubeconfig controller-manager controller-manager
    kubeconfig scheduler scheduler
    kubeconfig kube-proxy kube-proxy
    kubeconfig kube-router kube-router
    kubeconfig kubelet kubelet
}

# ---------------------------------------------------------------------------------------
# Configuration files

write_configs() {
    mkdir -p "$CNI_CONF_DIR" "$DATA_DIR/containerd" "$RUN_DIR/containerd" "$DATA_DIR/kubelet" \
        "$DATA_DIR/pod-logs" "$DATA_DIR/local-path"
    cat >"$DATA_DIR/containerd.toml" <<EOF
version = 2
root = "$DATA_DIR/containerd"
state = "$RUN_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.internal.v1.opt"]
  path = "$DATA_DIR/containerd-opt"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  enable_selinux = false
  # A process here may not lower its oom_score_adj (runc fails "can't get final child's PID").
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$CNI_CONF_DIR"
    max_conf_num = 1
EOF
    cat >"$CNI_CONF_DIR/10-storefront.conflist" <<EOF
{
  "cniVersion": "0.4.0",
  "name": "storefront",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": "$DATA_DIR/cni/ipam",
        "ranges": [[{ "subnet": "$POD_CIDR" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } },
    { "type": "firewall", "backend": "iptables" }
  ]
}
EOF
    # Pods with dnsPolicy Default (CoreDNS) get this: no nameserver outside the machine.
    printf 'nameserver 127.0.0.1\noptions ndots:1\n' >"$DATA_DIR/resolv.conf"
    cat >"$DATA_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 20248
tlsCertFile: $PKI/kubelet-serving.crt
tlsPrivateKeyFile: $PKI/kubelet-serving.key
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $PKI/ca.crt }
authorization:
  mode: Webhook
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
clusterDNS: [$DNS_SERVICE_IP]
clusterDomain: $CLUSTER_DOMAIN
resolvConf: $DATA_DIR/resolv.conf
podLogsDir: $DATA_DIR/pod-logs
serializeImagePulls: false
imageGCHighThresholdPercent: 99
imageGCLowThresholdPercent: 98
evictionHard:
  memory.available: 200Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
maxPods: 60
EOF
    cat >"$DATA_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection:
  kubeconfig: $DATA_DIR/kube-proxy.kubeconfig
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: 127.0.0.1
healthzBindAddress: 127.0.0.1:20256
metricsBindAddress: 127.0.0.1:20249
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
  masqueradeAll: false
conntrack:
  maxPerCore: 0
  min: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# ---------------------------------------------------------------------------------------
# Images the cluster itself runs, made from the built binaries (no registry)

# docker_import_binary IMAGE ROOTFS_DIR ENTRYPOINT_JSON
docker_import_rootfs() {
    local image=$1 rootfs=$2 entrypoint=$3
    docker image inspect "$image" >/dev/null 2>&1 &&
        [[ "$(docker image inspect --format '{{index .Config.Labels "org.storefront.bin"}}' "$image")" == "$BIN" ]] &&
        return 0
    tar -C "$rootfs" -c . | docker import --change "ENTRYPOINT $entrypoint" \
        --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" \
        --change "LABEL org.storefront.bin=$BIN" - "$image" >/dev/null
}

build_system_images() {
    local root="$DATA_DIR/rootfs"
    rm -rf "$root"
    mkdir -p "$root/pause" "$root/coredns/etc/coredns" "$root/lpp/usr/bin" "$root/lpp/etc/config" \
        "$root/busybox/bin" "$root/busybox/tmp"
    cp "$BIN/pause" "$root/pause/pause"
    docker_import_rootfs "$PAUSE_IMAGE" "$root/pause" '["/pause"]'
    cp "$BIN/coredns" "$root/coredns/coredns"
    docker_import_rootfs "$COREDNS_IMAGE" "$root/coredns" '["/coredns"]'
    cp "$BIN/local-path-provisioner" "$root/lpp/usr/bin/local-path-provisioner"
    docker_import_rootfs "$LPP_IMAGE" "$root/lpp" '["/usr/bin/local-path-provisioner"]'
    # The provisioner's helper pod (mkdir/rm of a volume's directory) runs a shell.
    cp /bin/busybox "$root/busybox/bin/busybox"
    for applet in sh mkdir rm rmdir chmod ls sleep cat; do ln -s busybox "$root/busybox/bin/$applet"; done
    chmod 1777 "$root/busybox/tmp"
    docker_import_rootfs "$BUSYBOX_IMAGE" "$root/busybox" '["/bin/sh"]'
    rm -rf "$root"
    load_images "$PAUSE_IMAGE" "$COREDNS_IMAGE" "$LPP_IMAGE" "$BUSYBOX_IMAGE"
}

# load_images IMAGE[=REF]...: docker save | ctr import, skipped when containerd already has
# the same content under that name: the config digest of the image REF names there equals the
# Docker image id (the digest of the same config), so the layers are the same too.
load_images() {
    local spec image ref id
    for spec in "$@"; do
        image="${spec%%=*}"
        ref="${spec#*=}"
        id="$(docker image inspect --format '{{.Id}}' "$image")" || die "no image $image in Docker"
        ref="$(normalize_ref "$ref")"
        if [[ "$(containerd_config_digest "$ref")" == "$id" ]]; then
            log "$ref is already in the cluster ($id)"
            continue
        fi
        log "loading $image into the cluster as $ref ($id)"
        docker save "$image" | ctr_k8s images import --no-unpack=false - >/dev/null ||
            die "ctr images import of $image failed"
        local saved
        saved="$(normalize_ref "$image")"
        if [[ $saved != "$ref" ]]; then
            ctr_k8s images rm "$ref" >/dev/null 2>&1 || true
            ctr_k8s images tag "$saved" "$ref" >/dev/null
        fi
    done
}

# containerd_config_digest REF: the digest of the config of the image REF names in the
# cluster's containerd (its manifest's config; the first manifest of an index), or nothing.
containerd_config_digest() {
    local target manifest
    target="$(ctr_k8s images ls "name==$1" 2>/dev/null | awk -v ref="$1" '$1 == ref { print $3 }')"
    [[ $target == sha256:* ]] || return 0
    manifest="$(ctr_k8s content get "$target" 2>/dev/null)" || return 0
    if [[ $manifest == *'"manifests"'* ]]; then
        target="$(grep -o '"digest" *: *"sha256:[0-9a-f]*"' <<<"$manifest" | head -n1 | grep -o 'sha256:[0-9a-f]*')"
        manifest="$(ctr_k8s content get "$target" 2>/dev/null)" || return 0
    fi
    tr -d ' \n' <<<"$manifest" | grep -o '"config":{[^}]*}' | grep -o 'sha256:[0-9a-f]\{64\}' | head -n1
}

# docker.io/library/NAME:TAG, the way the kubelet names an image without a registry.
normalize_ref() {
    local ref=$1 first=${1%%/*}
    [[ $ref == *:* && ${ref##*:} != */* ]] || ref="$ref:latest"
    if [[ $ref != */* ]]; then
        ref="docker.io/library/$ref"
    elif [[ $first != *.* && $first != *:* && $first != localhost ]]; then
        ref="docker.io/$ref"
    fi
    printf '%s\n' "$ref"
}

# A Redis image for the chart in the cluster: the project's storefront-redis:7 (no shell) with
# busybox's sh and sleep, which the chart's sentinel mode runs (the official image has them).
redis_image() {
    local context="$DATA_DIR/redis-image" image=$CLUSTER_REDIS_IMAGE
    docker image inspect storefront-redis:7 >/dev/null 2>&1 || die "no storefront-redis:7: run make redis-images"
    rm -rf "$context"
    mkdir -p "$context"
    cp /bin/busybox "$context/busybox"
    local user
    user="$(docker image inspect --format '{{.Config.User}}' storefront-redis:7)"
    printf '%s\n' 'FROM storefront-redis:7' 'COPY busybox /bin/busybox' 'USER 0' \
        'RUN ["/bin/busybox", "ln", "-s", "busybox", "/bin/sh"]' \
        'RUN ["/bin/busybox", "ln", "-s", "busybox", "/bin/sleep"]' "USER ${user:-0}" >"$context/Dockerfile"
    DOCKER_BUILDKIT=0 docker build --force-rm -q -t "$image" "$context" >/dev/null 2>&1 ||
        die "docker build of $image failed"
    rm -rf "$context"
    printf '%s\n' "$image"
}

# ---------------------------------------------------------------------------------------
# Node network: the node's own address on a bridge with no ports (this kernel has no dummy
# interfaces); br_netfilter for Services

setup_network() {
    if ! ip link show "$NODE_IF" >/dev/null 2>&1; then
        ip link add "$NODE_IF" type bridge
        ip addr add "$NODE_IP/32" dev "$NODE_IF"
        ip link set "$NODE_IF" up
    fi
    [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] || modprobe br_netfilter 2>/dev/null || true
    [[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] ||
        die "no br_netfilter: Services cannot reach pods on the same bridge"
    sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.ipv4.ip_forward=1 >/dev/null
}

# ---------------------------------------------------------------------------------------

api_ready() { kubectl get --raw /readyz; }

node_ready() {
    [[ "$(kubectl get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}')" == True ]]
}

start_control_plane() {
    start etcd "$BIN/etcd" --name storefront --data-dir "$DATA_DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "storefront=http://127.0.0.1:$ETCD_PEER_PORT" \
        --listen-metrics-urls "http://127.0.0.1:23810" \
        --unsafe-no-fsync --quota-backend-bytes 2147483648
    start containerd containerd --config "$DATA_DIR/containerd.toml"
    start kube-apiserver "$BIN/hyperkube" kube-apiserver \
        --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
        --bind-address "$NODE_IP" --secure-port "$APISERVER_PORT" --advertise-address "$NODE_IP" \
        --service-cluster-ip-range "$SERVICE_CIDR" \
        --client-ca-file "$PKI/ca.crt" \
        --tls-cert-file "$PKI/apiserver.crt" --tls-private-key-file "$PKI/apiserver.key" \
        --kubelet-client-certificate "$PKI/apiserver-kubelet-client.crt" \
        --kubelet-client-key "$PKI/apiserver-kubelet-client.key" \
        --kubelet-certificate-authority "$PKI/ca.crt" \
        --service-account-key-file "$PKI/sa.pub" \
        --service-account-signing-key-file "$PKI/sa.key" \
        --service-account-issuer "https://kubernetes.default.svc.$CLUSTER_DOMAIN" \
        --authorization-mode Node,RBAC --enable-admission-plugins NodeRestriction \
        --kubelet-preferred-address-types InternalIP \
        --allow-privileged=true --profiling=false --event-ttl 30m
    wait_until 60 "containerd" test -S "$CONTAINERD_SOCK"
    wait_until 120 "kube-apiserver /readyz" api_ready
    start kube-controller-manager "$BIN/hyperkube" kube-controller-manager \
        --kubeconfig "$DATA_DIR/controller-manager.kubeconfig" \
        --authentication-kubeconfig "$DATA_DIR/controller-manager.kubeconfig" \
        --authorization-kubeconfig "$DATA_DIR/controller-manager.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port 20257 --leader-elect=false \
        --service-account-private-key-file "$PKI/sa.key" --root-ca-file "$PKI/ca.crt" \
        --cluster-signing-cert-file "$PKI/ca.crt" --cluster-signing-key-file "$PKI/ca.key" \
        --use-service-account-credentials=true --profiling=false \
        --allocate-node-cidrs=true --cluster-cidr "$POD_CIDR" --node-cidr-mask-size 24
    start kube-scheduler "$BIN/hyperkube" kube-scheduler \
        --kubeconfig "$DATA_DIR/scheduler.kubeconfig" \
        --authentication-kubeconfig "$DATA_DIR/scheduler.kubeconfig" \
        --authorization-kubeconfig "$DATA_DIR/scheduler.kubeconfig" \
        --bind-address 127.0.0.1 --secure-port 20259 --leader-elect=false --profiling=false
}

# kube-router's ClusterRole from its own manifest (daemonset/generic-kuberouter.yaml in its
# module: read what it watches, its leases, services/status), bound to its certificate's user.
kube_router_rbac() {
    local module role
    module="$(cd "$REPO_ROOT/tools/kube-router" &&
        "$(command -v go || echo /usr/local/go/bin/go)" list -m -f '{{.Dir}}' github.com/cloudnativelabs/kube-router/v2)"
    # The ClusterRole document (its stray metadata.namespace dropped: the kind is cluster-wide).
    role="$(awk '/^kind: ClusterRole$/ { on = 1 } on && /^---/ { exit } on && !/^  namespace:/' \
        "$module/daemonset/generic-kuberouter.yaml")"
    [[ $role == *"name: kube-router"* && $role == *networkpolicies* ]] ||
        die "no kube-router ClusterRole in $module/daemonset/generic-kuberouter.yaml"
    {
        printf '%s\n' "$role"
        cat <<EOF
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: kube-router
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: kube-router
subjects:
  - apiGroup: rbac.authorization.k8s.io
    kind: User
    name: kube-router
EOF
    } | kubectl apply --server-side --force-conflicts -f - >/dev/null
}

start_node() {
    start kubelet "$BIN/hyperkube" kubelet --config "$DATA_DIR/kubelet.yaml" \
        --kubeconfig "$DATA_DIR/kubelet.kubeconfig" --root-dir "$DATA_DIR/kubelet" \
        --hostname-override "$NODE_NAME" --node-ip "$NODE_IP"
    start kube-proxy "$BIN/hyperkube" kube-proxy --config "$DATA_DIR/kube-proxy.yaml"
    wait_until 180 "node $NODE_NAME Ready" node_ready
    # NetworkPolicy enforcement only, once the node is registered (it looks itself up): pods
    # get their network from the bridge plugin, Services from kube-proxy. No health or
    # metrics port (they would listen on every interface).
    kube_router_rbac
    start kube-router "$BIN/kube-router" --kubeconfig "$DATA_DIR/kube-router.kubeconfig" \
        --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
        --hostname-override "$NODE_NAME" --service-cluster-ip-range "$SERVICE_CIDR" \
        --health-port 0 --metrics-port 0 --iptables-sync-period 1m
    wait_until 60 "kube-router's firewall chains" iptables -S KUBE-ROUTER-FORWARD
}

# The local-path-provisioner's own manifest (deploy/local-path-storage.yaml in its module),
# with the local images and a volume directory under the data dir; its StorageClass becomes
# the default one.
local_path_manifest() {
    local module
    module="$(cd "$REPO_ROOT/tools/local-path-provisioner" &&
        "$(command -v go || echo /usr/local/go/bin/go)" list -m -f '{{.Dir}}' github.com/rancher/local-path-provisioner)"
    sed -e "s|image: rancher/local-path-provisioner:.*|image: $LPP_IMAGE|" \
        -e "s|image: busybox$|image: $BUSYBOX_IMAGE|" \
        -e "s|/opt/local-path-provisioner|$DATA_DIR/local-path|" \
        "$module/deploy/local-path-storage.yaml"
}

addons() {
    sed -e "s|@DNS_SERVICE_IP@|$DNS_SERVICE_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" \
        -e "s|@CLUSTER_DOMAIN@|$CLUSTER_DOMAIN|g" "$REPO_ROOT/tools/cluster/coredns.yaml" |
        kubectl apply --server-side --force-conflicts -f - >/dev/null
    local_path_manifest | kubectl apply --server-side --force-conflicts -f - >/dev/null
    kubectl annotate --overwrite storageclass local-path storageclass.kubernetes.io/is-default-class=true >/dev/null
    kubectl -n kube-system rollout status deployment/coredns --timeout=180s >/dev/null ||
        die "CoreDNS did not become ready (logs: $LOG_DIR, kubectl -n kube-system describe pods)"
    kubectl -n local-path-storage rollout status deployment/local-path-provisioner --timeout=180s >/dev/null ||
        die "local-path-provisioner did not become ready"
}

up() {
    ((EUID == 0)) || die "the cluster needs root (network, mounts, containerd)"
    install_debs
    "$REPO_ROOT/tools/ensure-docker.sh"
    BIN="$("$REPO_ROOT/tools/build-cluster.sh")"
    mkdir -p "$DATA_DIR" "$RUN_DIR" "$LOG_DIR" "$(dirname "$LOCK_FILE")"
    exec 8>"$LOCK_FILE"
    flock -w 600 8 || die "timed out waiting for $LOCK_FILE"
    printf '%s\n' "$BIN" >"$RUN_DIR/bin"
    local started=$SECONDS
    make_pki
    write_configs
    setup_network
    start_control_plane
    build_system_images
    start_node
    addons
    log "up in $((SECONDS - started)) s; export KUBECONFIG=$KUBECONFIG_ADMIN (kubectl: $BIN/hyperkube kubectl)"
}

# ---------------------------------------------------------------------------------------

# The kubelet's own iptables chains (kube-proxy --cleanup leaves them) and the CNI firewall
# plugin's (it lets pod traffic through Docker's FORWARD policy DROP; its per-pod rules go
# with the pods, the chains stay).
remove_kubelet_chains() {
    local table chain
    while iptables -t filter -D INPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while iptables -t filter -D OUTPUT -j KUBE-FIREWALL 2>/dev/null; do :; done
    while iptables -t filter -D FORWARD -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD 2>/dev/null; do :; done
    for chain in CNI-FORWARD CNI-ADMIN; do
        iptables -t filter -F "$chain" 2>/dev/null && iptables -t filter -X "$chain" 2>/dev/null || true
    done
    for table in filter nat mangle; do
        for chain in KUBE-FIREWALL KUBE-KUBELET-CANARY KUBE-IPTABLES-HINT; do
            iptables -t "$table" -F "$chain" 2>/dev/null && iptables -t "$table" -X "$chain" 2>/dev/null || true
        done
    done
}

# kube-router's firewall chains (its --cleanup-config leaves them when the sets are gone).
remove_kube_router_chains() {
    local rule chain chains
    while read -r rule; do
        eval "iptables -t filter ${rule/-A /-D }" 2>/dev/null || true
    done < <(iptables-save -t filter | grep -E '^-A (INPUT|FORWARD|OUTPUT) .*-j KUBE-ROUTER-')
    chains="$(iptables-save -t filter | sed -n 's/^:\(KUBE-\(ROUTER\|POD-FW\|NWPLCY\)[^ ]*\) .*/\1/p')"
    for chain in $chains; do iptables -t filter -F "$chain" 2>/dev/null || true; done
    for chain in $chains; do iptables -t filter -X "$chain" 2>/dev/null || true; done
}

down() {
    ((EUID == 0)) || die "needs root"
    [[ -d $RUN_DIR || -d $DATA_DIR ]] || return 0
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 8>"$LOCK_FILE"
    flock -w 600 8 || die "timed out waiting for $LOCK_FILE"
    BIN="$(cat "$RUN_DIR/bin" 2>/dev/null || true)"
    # Pods first, through the kubelet: it unmounts their volumes and the CNI plugin tears
    # down their network namespaces and bridge ports.
    if [[ -n $BIN ]] && running kubelet && running kube-apiserver; then
        kubectl delete namespaces --all --wait=false --timeout=30s >/dev/null 2>&1 || true
        kubectl delete pods --all --all-namespaces --grace-period=1 --wait=true --timeout=60s >/dev/null 2>&1 || true
    fi
    stop kube-router
    stop kube-proxy
    stop kubelet
    # Whatever pod is left: stop its tasks in our containerd (never Docker's).
    if running containerd; then
        local task
        for task in $(ctr_k8s tasks ls -q 2>/dev/null); do
            ctr_k8s tasks kill -s KILL "$task" >/dev/null 2>&1 || true
        done
        sleep 1
        for task in $(ctr_k8s tasks ls -q 2>/dev/null); do
            ctr_k8s tasks rm -f "$task" >/dev/null 2>&1 || true
        done
        for task in $(ctr_k8s containers ls -q 2>/dev/null); do
            ctr_k8s containers rm "$task" >/dev/null 2>&1 || true
        done
    fi
    local name i
    for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
        name="${PROCESSES[$i]}"
        [[ $name == kubelet || $name == kube-proxy || $name == kube-router ]] || stop "$name"
    done
    # kube-proxy's and kube-router's iptables chains and ipsets, removed by themselves.
    if [[ -n $BIN && -x $BIN/hyperkube ]]; then
        "$BIN/hyperkube" kube-proxy --cleanup >/dev/null 2>&1 || true
    fi
    if [[ -n $BIN && -x $BIN/kube-router ]]; then
        timeout 60 "$BIN/kube-router" --cleanup-config >/dev/null 2>&1 || true
    fi
    remove_kubelet_chains
    remove_kube_router_chains
    # Mounts under the data dir (kubelet volumes, containerd's overlay and sandbox shm).
    local mount_point
    while read -r mount_point; do
        umount -l "$mount_point" 2>/dev/null || true
    done < <(awk -v d="$DATA_DIR" -v r="$RUN_DIR" '$5 ~ "^"d || $5 ~ "^"r { print $5 }' /proc/self/mountinfo | sort -r)
    # Network namespaces our containerd made (named cni-<uuid>, listed in its sandboxes' state).
    local netns
    for netns in $(grep -rhoa '/var/run/netns/cni-[0-9a-f-]*' "$DATA_DIR/containerd" 2>/dev/null | sort -u); do
        ip netns delete "$(basename "$netns")" 2>/dev/null || true
    done
    ip link delete "$BRIDGE" 2>/dev/null || true
    ip link delete "$NODE_IF" 2>/dev/null || true
    rm -rf "$RUN_DIR"
    rm -rf --one-file-system "$DATA_DIR"
    log "down"
}

status() {
    BIN="$(cat "$RUN_DIR/bin" 2>/dev/null)" || return 1
    local name
    for name in "${PROCESSES[@]}"; do running "$name" || return 1; done
    api_ready >/dev/null 2>&1 && node_ready 2>/dev/null
}

main() {
    case "${1:-}" in
    up) up ;;
    down) down ;;
    status) status ;;
    env) printf 'export KUBECONFIG=%s\n' "$KUBECONFIG_ADMIN" ;;
    load-skaffold-image)
        # A skaffold build hook (skaffold.yaml, profile local-cluster): SKAFFOLD_IMAGE is the
        # tag it built; unpushed, skaffold deploys it as REPO:<image id> (its TagWithImageID).
        BIN="$(cat "$RUN_DIR/bin" 2>/dev/null)" || die "the cluster is not up (make cluster)"
        [[ -n ${SKAFFOLD_IMAGE:-} ]] || die "SKAFFOLD_IMAGE is not set (run by skaffold only)"
        local id
        id="$(docker image inspect --format '{{.Id}}' "$SKAFFOLD_IMAGE")" || die "no image $SKAFFOLD_IMAGE"
        load_images "$SKAFFOLD_IMAGE" "$SKAFFOLD_IMAGE=${SKAFFOLD_IMAGE%:*}:${id#sha256:}"
        ;;
    redis-image)
        mkdir -p "$DATA_DIR"
        redis_image
        ;;
    load-redis-image)
        # A skaffold deploy hook (profile local-cluster, which points the chart at this image):
        # no registry serves the chart's default Redis image to this cluster.
        BIN="$(cat "$RUN_DIR/bin" 2>/dev/null)" || die "the cluster is not up (make cluster)"
        local redis
        redis="$(redis_image)"
        load_images "$redis"
        ;;
    load)
        shift
        BIN="$(cat "$RUN_DIR/bin" 2>/dev/null)" || die "the cluster is not up"
        load_images "$@"
        ;;
    *)
        printf 'usage: %s up|down|status|env|load IMAGE[=REF]...|load-skaffold-image|redis-image|load-redis-image\n' "$0" >&2
        exit 2
        ;;
    esac
}

main "$@"
