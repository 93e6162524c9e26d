#!/usr/bin/env bash
# Make sure a Docker engine answers `docker info` before the tests run.
#
# - An engine already answers: do nothing, print nothing.
# - Root without an engine: install Debian's docker.io (if dockerd is missing), start
#   dockerd in the background (setsid, logging to $STOREFRONT_DOCKERD_LOG) and wait for it.
#   A dockerd that is already running (but still starting) is waited for, never doubled.
# - Not root and no engine: say so and exit 0; pytest then skips the Docker tests locally
#   with a reason (in CI, where CI=true, the conftest fails them instead).
set -euo pipefail

readonly DOCKERD_LOG="${STOREFRONT_DOCKERD_LOG:-/var/log/storefront-dockerd.log}"
readonly LOCK_FILE="${STOREFRONT_DOCKER_LOCK:-/run/lock/storefront-ensure-docker.lock}"
readonly WAIT_SECONDS="${STOREFRONT_DOCKER_WAIT:-30}"

log() { printf 'ensure-docker: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

dockerd_running() { pgrep -x dockerd >/dev/null 2>&1; }

# shellcheck source=tools/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"

wait_for_engine() {
    local deadline=$((SECONDS + WAIT_SECONDS))
    until engine_answers; do
        if ((SECONDS >= deadline)); then
            log "no answer from dockerd after ${WAIT_SECONDS}s; end of ${DOCKERD_LOG}:"
            tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
            return 1
        fi
        if ! dockerd_running; then
            log "dockerd exited; end of ${DOCKERD_LOG}:"
            tail -n 30 "$DOCKERD_LOG" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.2
    done
}

main() {
    engine_answers && return 0

    if ((EUID != 0)); then
        log "no Docker engine answers and this is not root: not installing one."
        log "The Docker-backed tests will be skipped locally (run \`make test\` as root to get an engine)."
        return 0
    fi

    # One ensure-docker at a time (two `make` runs must not start two engines).
    mkdir -p "$(dirname "$LOCK_FILE")"
    exec 9>"$LOCK_FILE"
    flock -w 900 9 || {
        log "timed out waiting for ${LOCK_FILE}"
        return 1
    }
    engine_answers && return 0

    command -v dockerd >/dev/null 2>&1 || apt_install docker.io

    if dockerd_running; then
        log "dockerd is already running; waiting for it to answer"
    else
        mkdir -p "$(dirname "$DOCKERD_LOG")"
        log "starting dockerd (log: ${DOCKERD_LOG})"
        # setsid -f: its own session, so it outlives make and is not tied to this terminal.
        # 9>&-: dockerd must not inherit (and so hold forever) the lock.
        setsid -f dockerd >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&-
    fi
    wait_for_engine
    log "Docker engine ready"
}

main "$@"
