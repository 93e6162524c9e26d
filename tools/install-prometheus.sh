#!/usr/bin/env bash
# Make sure `prometheus` and `promtool` (Debian's prometheus package) are on PATH for the
# observability tests (promtool checks and unit-tests the rules; the live test runs its
# own server on a loopback port).
#
# - Both already there: do nothing, print nothing.
# - Root: apt-get install --no-install-recommends prometheus. Where services may start
#   (no policy-rc.d forbidding it, or systemd), the package starts a system server on
#   :9090; the tests do not want it, so this stops and disables the one it just installed.
# - Not root: say so and exit 0; the tests then skip locally with the reason (in CI, where
#   CI=true, they fail instead).
set -euo pipefail

log() { printf 'install-prometheus: %s\n' "$*" >&2; }

have_binaries() { command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; }

# shellcheck source=tools/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

stop_system_server() {
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    elif [[ -x /etc/init.d/prometheus ]]; then
        # Directly, not through invoke-rc.d: a policy-rc.d that forbade the start would
        # forbid the stop too (and then nothing runs anyway).
        /etc/init.d/prometheus stop >/dev/null 2>&1 || true
        update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
}

main() {
    have_binaries && return 0

    if ((EUID != 0)); then
        log "prometheus/promtool are missing and this is not root: not installing them."
        log "The observability tests will be skipped locally (run \`make test\` as root, or apt-get install prometheus)."
        return 0
    fi

    apt_install prometheus
    stop_system_server
    have_binaries || {
        log "prometheus installed, but prometheus/promtool are still not on PATH"
        return 1
    }
    log "$(prometheus --version 2>&1 | head -n 1)"
}

main "$@"
