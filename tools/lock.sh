#!/usr/bin/env bash
# Every pinned Python set of the project, from one place (`make lock`, `make upgrade`, `make lint`):
#
#   uv.lock                     the project: runtime, dev, local and loadgen groups
#   requirements/runtime.txt    exported from uv.lock: what the service images install
#   requirements/loadgen.txt    exported from uv.lock: what the load generator image installs
#   requirements/build.txt      compiled from build.in: the image's wheel build backend
#   requirements/checkov.txt    compiled from checkov.in: the checkov tool venv
#
# Every file carries the sha256 of each artifact; installs use them with --require-hashes.
#
#   tools/lock.sh lock      re-resolve after editing pyproject.toml or a .in file, keeping
#                           every other pin
#   tools/lock.sh upgrade   move every pin to the newest release the ranges allow
#   tools/lock.sh check     fail when any file disagrees with its source (nothing is written)
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
readonly REPO_ROOT
readonly UV="${UV:-$REPO_ROOT/.tools/uv/bin/uv}"
readonly REQUIREMENTS="$REPO_ROOT/requirements"
# The images' Python; the tool venvs use the same minor version.
readonly PYTHON_VERSION="3.11"
export UV_PYTHON_DOWNLOADS=never

CHECK_DIR=""

log() { printf 'lock: %s\n' "$*" >&2; }
cleanup() { [[ -z $CHECK_DIR ]] || rm -rf "$CHECK_DIR"; }

# export_group OUT ARGS...: the lock's packages for ARGS as a hashed requirements file.
export_group() {
    local out="$1"
    shift
    "$UV" export --quiet --frozen --no-emit-project --no-header --format requirements-txt \
        --directory "$REPO_ROOT" "$@" -o "$out"
}

# compile IN OUT ARGS...: a hashed requirements file from a .in file (existing pins kept).
# Run from the repository root: the output names IN by the path it is given.
compile() {
    local in="$1" out="$2"
    shift 2
    (cd "$REPO_ROOT" && "$UV" pip compile --quiet --generate-hashes --no-header \
        --python-version "$PYTHON_VERSION" "$@" "$in" -o "$out")
}

# write_all DIR ARGS...: every derived file into DIR (ARGS go to the compile step).
write_all() {
    local dir="$1"
    shift
    export_group "$dir/runtime.txt" --no-default-groups
    export_group "$dir/loadgen.txt" --no-default-groups --only-group loadgen
    compile requirements/build.in "$dir/build.txt" "$@"
    compile requirements/checkov.in "$dir/checkov.txt" "$@"
}

main() {
    case "${1:-}" in
        lock)
            "$UV" lock --quiet --directory "$REPO_ROOT"
            write_all "$REQUIREMENTS"
            ;;
        upgrade)
            "$UV" lock --quiet --upgrade --directory "$REPO_ROOT"
            write_all "$REQUIREMENTS" --upgrade
            log "review the changes (git diff uv.lock requirements/), run \`make test\`, commit"
            ;;
        check)
            "$UV" lock --quiet --check --directory "$REPO_ROOT" ||
                { log "uv.lock disagrees with pyproject.toml: run \`make lock\`"; return 1; }
            local status=0 name
            CHECK_DIR="$(mktemp -d)"
            trap cleanup EXIT
            # Seed the compile outputs with the committed pins, so that only a change of
            # source (or a stale file) can make them differ.
            cp "$REQUIREMENTS"/build.txt "$REQUIREMENTS"/checkov.txt "$CHECK_DIR"/
            write_all "$CHECK_DIR"
            for name in runtime.txt loadgen.txt build.txt checkov.txt; do
                if ! cmp -s "$CHECK_DIR/$name" "$REQUIREMENTS/$name"; then
                    log "requirements/$name is stale: run \`make lock\`"
                    diff -u "$REQUIREMENTS/$name" "$CHECK_DIR/$name" | head -n 20 >&2 || true
                    status=1
                fi
            done
            return "$status"
            ;;
        *)
            printf 'usage: %s lock|upgrade|check\n' "$0" >&2
            return 2
            ;;
    esac
}

main "$@"
