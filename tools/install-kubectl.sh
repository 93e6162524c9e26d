#!/usr/bin/env bash
# Install kubectl into the project (.tools/bin/kubectl) as a link to the hyperkube binary
# tools/build-cluster.sh builds from k8s.io/kubernetes (hyperkube runs kubectl when called by
# that name), so kubectl always has the cluster's own version. Prints nothing when done already.
#
#   KUBECTL_INSTALL_DIR  where the link goes (default: <repo>/.tools/bin)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly INSTALL_DIR="${KUBECTL_INSTALL_DIR:-$REPO_ROOT/.tools/bin}"

bin="$("$REPO_ROOT/tools/build-cluster.sh")"
mkdir -p "$INSTALL_DIR"
if [[ "$(readlink "$INSTALL_DIR/kubectl" 2>/dev/null)" != "$bin/hyperkube" ]]; then
    ln -sfn "$bin/hyperkube" "$INSTALL_DIR/kubectl"
    printf 'install-kubectl: %s -> %s\n' "$INSTALL_DIR/kubectl" "$bin/hyperkube" >&2
fi
