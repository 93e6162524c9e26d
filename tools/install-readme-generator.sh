#!/usr/bin/env bash
# Install the pinned @bitnami/readme-generator-for-helm (tools/readme-generator/package.json
# and its package-lock.json) into .tools/readme-generator with `npm ci`. It writes the
# parameters table of charts/storefront/README.md from the ## @param comments in values.yaml;
# tests/chart checks that the committed table is what it generates.
#
# Fast and silent when the installed copy matches the lock file.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly SOURCE_DIR="$REPO_ROOT/tools/readme-generator"
readonly TARGET_DIR="$REPO_ROOT/.tools/readme-generator"
readonly BIN="$TARGET_DIR/node_modules/.bin/readme-generator"
readonly STAMP="$TARGET_DIR/.installed"

log() { printf 'install-readme-generator: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

inputs_hash() { cat "$SOURCE_DIR/package.json" "$SOURCE_DIR/package-lock.json" | sha256sum | cut -c1-64; }

# The stamp holds the hash of the package files of the last finished install.
is_current() { [[ -x $BIN && -f $STAMP && "$(<"$STAMP")" == "$(inputs_hash)" ]]; }

main() {
    is_current && return 0
    command -v npm >/dev/null 2>&1 || die "npm is needed (apt-get install npm)"
    mkdir -p "$TARGET_DIR"
    exec 9>"$TARGET_DIR/.install.lock"
    flock -w 300 9 || die "timed out waiting for $TARGET_DIR/.install.lock"
    is_current && return 0

    log "installing $(sed -n 's/.*"\(@bitnami[^"]*\)": "\([^"]*\)".*/\1@\2/p' "$SOURCE_DIR/package.json") into $TARGET_DIR"
    rm -f "$STAMP"
    cp "$SOURCE_DIR/package.json" "$SOURCE_DIR/package-lock.json" "$TARGET_DIR/"
    npm ci --prefix "$TARGET_DIR" --no-audit --no-fund --silent || die "npm ci failed"
    "$BIN" --version >/dev/null || die "$BIN does not run"
    inputs_hash >"$STAMP"
}

main "$@"
