#!/usr/bin/env bash
# Build skaffold from its Go module (version and go.sum: tools/skaffold/go.mod, which repeats
# skaffold's own replace directives) and install it as .tools/bin/skaffold. The binary is
# cached in .cache/skaffold/<key>/ (key: a hash of go.mod, go.sum and the Go version); Go's
# module and build caches stay at their machine-wide defaults, so a fresh clone relinks only.
#
#   SKAFFOLD_INSTALL_DIR  where the link goes (default: <repo>/.tools/bin)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly MODULE="$REPO_ROOT/tools/skaffold"
readonly INSTALL_DIR="${SKAFFOLD_INSTALL_DIR:-$REPO_ROOT/.tools/bin}"
readonly LOCK_FILE="/tmp/storefront-install-skaffold.lock"
readonly GO_PARALLEL="${STOREFRONT_GO_PARALLEL:-2}"

log() { printf 'install-skaffold: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

go=""
for candidate in "${GO:-}" "$(command -v go 2>/dev/null || true)" /usr/local/go/bin/go; do
    [[ -n $candidate && -x $candidate ]] && go=$candidate && break
done
[[ -n $go ]] || die "no Go toolchain (go on PATH or /usr/local/go/bin/go)"

key="$({ "$go" version; cat "$MODULE/go.mod" "$MODULE/go.sum"; } | sha256sum | cut -c1-16)"
out="$REPO_ROOT/.cache/skaffold/$key"
if [[ ! -x $out/skaffold ]]; then
    exec 9>"$LOCK_FILE"
    flock -w 3600 9 || die "timed out waiting for $LOCK_FILE"
    if [[ ! -x $out/skaffold ]]; then
        version="$(awk '$1 == "tool" { next } $1 == "github.com/GoogleContainerTools/skaffold/v2" { print $2 }' "$MODULE/go.mod")"
        log "building skaffold $version from its Go module (cold: about 15 min on 2 cores)"
        started=$SECONDS
        mkdir -p "$out.tmp"
        (cd "$MODULE" && CGO_ENABLED=0 GOFLAGS="-mod=readonly -trimpath -p=$GO_PARALLEL" nice -n 5 \
            "$go" build -ldflags "-s -w -X github.com/GoogleContainerTools/skaffold/v2/pkg/skaffold/version.version=$version" \
            -o "$out.tmp/skaffold" github.com/GoogleContainerTools/skaffold/v2/cmd/skaffold) ||
            die "go build of skaffold failed"
        rm -rf "$out"
        mv "$out.tmp" "$out"
        log "built in $((SECONDS - started)) s"
    fi
fi
mkdir -p "$INSTALL_DIR"
[[ "$(readlink "$INSTALL_DIR/skaffold" 2>/dev/null)" == "$out/skaffold" ]] || ln -sfn "$out/skaffold" "$INSTALL_DIR/skaffold"
