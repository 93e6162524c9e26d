#!/usr/bin/env bash
# Make sure `wrk` (Debian's package) is installed: the benchmarks drive their load with it.
#
# - wrk already on PATH: do nothing, print nothing.
# - Root without wrk: `apt-get install wrk` (updating the package lists only when wrk has no
#   install candidate, or when the install fails on stale lists).
# - Not root and no wrk: say so and exit 0; the bench test is then skipped locally with the
#   reason (in CI, where CI=true, it fails instead), and `make bench` says what is missing.
set -euo pipefail

log() { printf 'install-wrk: %s\n' "$*" >&2; }

# shellcheck source=tools/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

main() {
    command -v wrk >/dev/null 2>&1 && return 0

    if ((EUID != 0)); then
        log "wrk is not installed and this is not root: not installing it."
        log "Install it with your package manager (Debian/Ubuntu: sudo apt-get install wrk)."
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        log "wrk is not installed and there is no apt-get here; install wrk by hand."
        return 1
    fi
    apt_install wrk
    command -v wrk >/dev/null 2>&1 || {
        log "apt-get installed wrk but it is not on PATH"
        return 1
    }
    log "wrk ready: $(command -v wrk)"
}

main "$@"
