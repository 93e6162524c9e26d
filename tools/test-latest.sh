#!/usr/bin/env bash
# The drift canary (`make test-latest`): the whole suite on the newest releases that
# pyproject.toml allows, in a throwaway venv, without touching uv.lock or .venv.
#
# Run it before `make upgrade`, and now and then (e.g. weekly) to learn of a breaking release
# before a user does. A failure here is not a failure of `make test`, which always runs the
# lock; it names what the next upgrade must fix. Extra arguments go to pytest.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly UV="${UV:-$REPO_ROOT/.tools/uv/bin/uv}"
readonly LATEST_VENV="$REPO_ROOT/.cache/latest-venv"
export UV_PYTHON_DOWNLOADS=never
WORK_DIR=""

log() { printf 'test-latest: %s\n' "$*" >&2; }
cleanup() { [[ -z $WORK_DIR ]] || rm -rf "$WORK_DIR"; }

main() {
    WORK_DIR="$(mktemp -d)"
    trap cleanup EXIT
    # Resolve afresh in a copy, so the committed lock stays as it is.
    cp "$REPO_ROOT/pyproject.toml" "$REPO_ROOT/uv.lock" "$REPO_ROOT/README.md" "$WORK_DIR"/
    "$UV" lock --quiet --upgrade --directory "$WORK_DIR"
    "$UV" export --quiet --frozen --no-emit-project --no-header --directory "$WORK_DIR" \
        -o "$WORK_DIR/latest.txt"
    rm -rf "$LATEST_VENV"
    "$UV" venv --quiet "$LATEST_VENV"
    "$UV" pip sync --quiet --require-hashes --python "$LATEST_VENV/bin/python" "$WORK_DIR/latest.txt"
    "$UV" pip install --quiet --no-deps --python "$LATEST_VENV/bin/python" -e "$REPO_ROOT"
    log "what differs from uv.lock:"
    diff <("$UV" export --quiet --frozen --no-emit-project --no-header --no-hashes \
        --directory "$REPO_ROOT" | grep '==') <(grep '==' "$WORK_DIR/latest.txt" | sed 's/ \\$//') |
        grep '^[<>]' >&2 || log "nothing: the lock is already the newest"
    cd "$REPO_ROOT"
    "$LATEST_VENV/bin/mypy"
    "$LATEST_VENV/bin/pytest" "$@"
}

main "$@"
