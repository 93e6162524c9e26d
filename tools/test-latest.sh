#!/usr/bin/env bash
# The drift canary (`make test-latest`): the whole suite on the newest releases that
# pyproject.toml allows, in a throwaway venv outside the work tree (removed at the end),
# without touching uv.lock or .venv.
#
# Run it before `make upgrade`, and now and then (e.g. weekly) to learn of a breaking release
# before a user does. A failure here is not a failure of `make test`, which always runs the
# lock; it names what the next upgrade must fix. Extra arguments go to pytest.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly UV="${UV:-$REPO_ROOT/.tools/uv/bin/uv}"
export UV_PYTHON_DOWNLOADS=never
WORK_DIR=""

log() { printf 'test-latest: %s\n' "$*" >&2; }
cleanup() { [[ -z $WORK_DIR ]] || rm -rf "$WORK_DIR"; }

main() {
    WORK_DIR="$(mktemp -d)"
    trap cleanup EXIT
    local latest_venv="$WORK_DIR/venv"
    # Resolve afresh in a copy, so the committed lock stays as it is.
    cp "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/uv.lock" "$REPO_ROOT/README.md" "$WORK_DIR"/
    "$UV" lock --quiet --upgrade --directory "$WORK_DIR"
    "$UV" export --quiet --frozen --no-emit-project --no-header --directory "$WORK_DIR" \
        -o "$WORK_DIR/latest.txt"
    "$UV" venv --quiet "$latest_venv"
    "$UV" pip sync --quiet --require-hashes --python "$latest_venv/bin/python" "$WORK_DIR/latest.txt"
    "$UV" pip install --quiet --no-deps --python "$latest_venv/bin/python" -e "$REPO_ROOT"
    log "what differs from uv.lock:"
    diff <("$UV" export --quiet --frozen --no-emit-project --no-header --no-hashes \
        --directory "$REPO_ROOT" | grep '==') <(grep '==' "$WORK_DIR/latest.txt" | sed 's/ \\$//') |
        grep '^[<>]' >&2 || log "nothing: the lock is already the newest"
    cd "$REPO_ROOT"
    "$latest_venv/bin/mypy"
    "$latest_venv/bin/pytest" "$@"
}

main "$@"
