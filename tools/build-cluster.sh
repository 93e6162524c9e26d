#!/usr/bin/env bash
# Build the local Kubernetes cluster's binaries from their Go modules (`make cluster` runs it):
#
#   hyperkube               kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
#                           kube-proxy and kubectl in one binary (tools/cluster/cmd/hyperkube)
#   etcd, coredns           at the versions tools/cluster/go.mod pins
#   local-path-provisioner  the StorageClass' provisioner (its own module: it imports logrus
#                           by its old capitalised path, which collides with the others')
#   kube-router             NetworkPolicy enforcement only (its own module, tools/kube-router)
#   pause                   the pod sandbox, compiled from k8s.io/kubernetes' build/pause/linux
#
# Versions: tools/cluster/go.mod and tools/local-path-provisioner/go.mod (with go.sum). The
# binaries land in .cache/cluster/<key>/bin, key = a hash of those files, the sources here and
# the Go version: a second run with nothing changed does nothing. Go keeps its module and build
# caches at its default, machine-wide places, so a fresh clone on a machine that built once
# only relinks (about a minute). Prints the bin directory on stdout.
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(dirname "$(dirname "$SCRIPT_PATH")")"
readonly SCRIPT_PATH REPO_ROOT
readonly CLUSTER_MODULE="$REPO_ROOT/tools/cluster"
readonly LPP_MODULE="$REPO_ROOT/tools/local-path-provisioner"
readonly KUBE_ROUTER_MODULE="$REPO_ROOT/tools/kube-router"
readonly LOCK_FILE="${STOREFRONT_CLUSTER_BUILD_LOCK:-/tmp/storefront-build-cluster.lock}"
# Go parallelism: the machines have 2 cores and other work runs beside the build.
readonly GO_PARALLEL="${STOREFRONT_GO_PARALLEL:-2}"

log() { printf 'build-cluster: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

find_go() {
    local go
    for go in "${GO:-}" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
        [[ -n $go && -x $go ]] && {
            printf '%s\n' "$go"
            return 0
        }
    done
    die "no Go toolchain (go on PATH or /usr/local/go/bin/go); the polyglot machines have one"
}

# The Kubernetes version is the one k8s.io/kubernetes is required at.
kubernetes_version() { awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$CLUSTER_MODULE/go.mod"; }

version_ldflags() {
    local version=$1 major minor pkg flags="-s -w"
    major="${version#v}"
    major="${major%%.*}"
    minor="$(cut -d. -f2 <<<"$version")"
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
        flags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
        flags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    printf '%s\n' "$flags"
}

build_key() {
    local go=$1
    {
        "$go" version
        cat "$SCRIPT_PATH" "$CLUSTER_MODULE/go.mod" "$CLUSTER_MODULE/go.sum" \
            "$LPP_MODULE/go.mod" "$LPP_MODULE/go.sum" \
            "$KUBE_ROUTER_MODULE/go.mod" "$KUBE_ROUTER_MODULE/go.sum"
        find "$CLUSTER_MODULE/cmd" -name '*.go' -type f | LC_ALL=C sort | xargs cat
    } | sha256sum | cut -c1-16
}

readonly BINARIES=(hyperkube etcd coredns local-path-provisioner kube-router pause)

complete() {
    local bin
    for bin in "${BINARIES[@]}"; do [[ -x $1/$bin ]] || return 1; done
}

main() {
    local go key version out tmp started gomodcache
    go="$(find_go)"
    key="$(build_key "$go")"
    out="$REPO_ROOT/.cache/cluster/$key/bin"
    if complete "$out"; then
        printf '%s\n' "$out"
        return 0
    fi
    exec 9>"$LOCK_FILE"
    flock -w 3600 9 || die "timed out waiting for $LOCK_FILE"
    if complete "$out"; then
        printf '%s\n' "$out"
        return 0
    fi
    command -v gcc >/dev/null 2>&1 || die "gcc is needed for the pause binary (apt-get install gcc libc6-dev)"

    version="$(kubernetes_version)"
    [[ $version == v1.* ]] || die "no k8s.io/kubernetes requirement in $CLUSTER_MODULE/go.mod"
    tmp="$REPO_ROOT/.cache/cluster/$key/tmp"
    rm -rf "$tmp"
    mkdir -p "$tmp"
    started=$SECONDS
    export CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -p=$GO_PARALLEL"
    log "building Kubernetes $version (hyperkube), etcd and CoreDNS from their Go modules" \
        "(cold: about 30 min on 2 cores; warm Go cache: about a minute)"
    (cd "$CLUSTER_MODULE" && nice -n 5 "$go" build -ldflags "$(version_ldflags "$version")" \
        -o "$tmp/" ./cmd/hyperkube ./cmd/etcd ./cmd/coredns) || die "go build in $CLUSTER_MODULE failed"
    log "building local-path-provisioner"
    (cd "$LPP_MODULE" && nice -n 5 "$go" build -ldflags "-s -w" -o "$tmp/local-path-provisioner" \
        github.com/rancher/local-path-provisioner) || die "go build in $LPP_MODULE failed"
    log "building kube-router (NetworkPolicy enforcement)"
    (cd "$KUBE_ROUTER_MODULE" && nice -n 5 "$go" build -ldflags "-s -w" -o "$tmp/kube-router" \
        github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) || die "go build in $KUBE_ROUTER_MODULE failed"
    gomodcache="$("$go" env GOMODCACHE)"
    (cd "$CLUSTER_MODULE" && "$go" mod download k8s.io/kubernetes)
    gcc -Os -Wall -Werror -static -DVERSION="$version" -o "$tmp/pause" \
        "$gomodcache/k8s.io/kubernetes@$version/build/pause/linux/pause.c" || die "gcc pause.c failed"
    rm -rf "$out"
    mv "$tmp" "$out"
    log "built in $((SECONDS - started)) s: $out"
    printf '%s\n' "$out"
}

main "$@"
