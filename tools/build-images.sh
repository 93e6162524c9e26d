#!/usr/bin/env bash
# Build the service images from the Dockerfile at the repository root (`make images`):
#
#   storefront-inventory:dev       ($STOREFRONT_INVENTORY_IMAGE)
#   storefront-checkout:dev        ($STOREFRONT_CHECKOUT_IMAGE)
#   storefront-loadgenerator:dev   ($STOREFRONT_LOADGENERATOR_IMAGE; the chart's optional
#                                  load generator: locust and bench/locustfile.py. Its own
#                                  venv adds about 35 s to a cold build, nothing to a cached one)
#
# FROM the local base storefront-python-base:3.11 (tools/build-python-base.sh, run first; no
# registry answers here), or from $STOREFRONT_BASE_IMAGE when set (e.g.
# python:3.11-slim-bookworm on a machine that can pull it). The labels get the version from
# pyproject.toml and the git revision ("-dirty" when the build context has uncommitted
# changes). The classic builder is used (DOCKER_BUILDKIT=0: no buildx here); its layer cache
# makes a rebuild with nothing changed take seconds, and one with only code changed skip the
# dependency install.
#
# The builder stages are tagged too ($STOREFRONT_BUILDER_IMAGE and
# $STOREFRONT_LOADGENERATOR_BUILDER_IMAGE), so that `docker image prune`
# keeps the layer cache, and the images a rebuild replaces are removed with their layers.
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(dirname "$(dirname "$SCRIPT_PATH")")"
readonly SCRIPT_PATH REPO_ROOT
readonly LOCAL_BASE="storefront-python-base:3.11"
readonly BASE_IMAGE="${STOREFRONT_BASE_IMAGE:-$LOCAL_BASE}"
readonly INVENTORY_IMAGE="${STOREFRONT_INVENTORY_IMAGE:-storefront-inventory:dev}"
readonly CHECKOUT_IMAGE="${STOREFRONT_CHECKOUT_IMAGE:-storefront-checkout:dev}"
readonly BUILDER_IMAGE="${STOREFRONT_BUILDER_IMAGE:-storefront-builder:dev}"
readonly LOADGENERATOR_IMAGE="${STOREFRONT_LOADGENERATOR_IMAGE:-storefront-loadgenerator:dev}"
readonly LOADGENERATOR_BUILDER_IMAGE="${STOREFRONT_LOADGENERATOR_BUILDER_IMAGE:-storefront-loadgenerator-builder:dev}"
readonly LOCK_FILE="${STOREFRONT_IMAGES_LOCK:-/tmp/storefront-build-images.lock}"
# What the Dockerfile copies (.dockerignore allows only these): "dirty" is about them.
readonly CONTEXT_PATHS=(Dockerfile .dockerignore pyproject.toml README.md requirements cartlib inventory checkout
    bench/locustfile.py)
export DOCKER_BUILDKIT="${DOCKER_BUILDKIT:-0}"

LOG_DIR=""

log() { printf 'build-images: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cleanup() { [[ -z $LOG_DIR ]] || rm -rf "$LOG_DIR"; }

project_version() {
    python3 - "$REPO_ROOT/pyproject.toml" <<'EOF'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    print(tomllib.load(f)["project"]["version"])
EOF
}

git_revision() {
    local revision
    revision="$(git -C "$REPO_ROOT" rev-parse HEAD 2>/dev/null)" || {
        printf 'unknown\n'
        return 0
    }
    if [[ -n "$(git -C "$REPO_ROOT" status --porcelain -- "${CONTEXT_PATHS[@]}" 2>/dev/null)" ]]; then
        revision+="-dirty"
    fi
    printf '%s\n' "$revision"
}

# The origin's URL without any user:password@ part (a label must never carry a credential).
git_source() {
    local url
    url="$(git -C "$REPO_ROOT" config --get remote.origin.url 2>/dev/null)" || return 0
    printf '%s\n' "$url" | sed -E 's#^([a-z+]+://)[^@/]*@#\1#'
}

# shellcheck source=tools/lib/image.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/image.sh"

# build TARGET TAG: build one target, quietly; show the build's output only when it fails.
build() {
    local target=$1 tag=$2 old_id new_id started output
    old_id="$(image_id "$tag")"
    output="$LOG_DIR/$target.log"
    started=$SECONDS
    if ! docker build --force-rm --target "$target" --tag "$tag" \
        --build-arg "BASE_IMAGE=$BASE_IMAGE" \
        --build-arg "VERSION=$VERSION" \
        --build-arg "REVISION=$REVISION" \
        --build-arg "SOURCE=$SOURCE" \
        --file "$REPO_ROOT/Dockerfile" "$REPO_ROOT" >"$output" 2>&1; then
        tail -n 40 "$output" >&2
        die "docker build --target $target failed"
    fi
    new_id="$(image_id "$tag")"
    remove_replaced "$old_id" "$new_id"
    if [[ $target != *builder ]]; then
        local state="rebuilt"
        [[ $old_id == "$new_id" ]] && state="unchanged"
        log "$tag: $state, $(image_size "$tag"), $((SECONDS - started)) s"
    fi
}

main() {
    if ! docker info >/dev/null 2>&1; then
        if ((EUID != 0)) && [[ ${CI:-} != true ]]; then
            log "no Docker engine answers: not building the images (their tests will be skipped)."
            return 0
        fi
        die "no Docker engine answers: run tools/ensure-docker.sh first (or \`make images\`)"
    fi
    if [[ $BASE_IMAGE == "$LOCAL_BASE" ]]; then
        "$REPO_ROOT/tools/build-python-base.sh"
        if ! docker image inspect "$LOCAL_BASE" >/dev/null 2>&1; then
            [[ ${CI:-} == true ]] && die "no $LOCAL_BASE to build on"
            log "no $LOCAL_BASE: not building the images (their tests will be skipped)."
            return 0
        fi
    fi

    exec 9>"$LOCK_FILE"
    flock -w 900 9 || die "timed out waiting for ${LOCK_FILE}"
    LOG_DIR="$(mktemp -d "${TMPDIR:-/tmp}/storefront-build-images.XXXXXX")"
    trap cleanup EXIT

    VERSION="$(project_version)"
    REVISION="$(git_revision)"
    SOURCE="$(git_source)"
    readonly VERSION REVISION SOURCE
    build builder "$BUILDER_IMAGE"
    build inventory "$INVENTORY_IMAGE"
    build checkout "$CHECKOUT_IMAGE"
    build loadgenerator-builder "$LOADGENERATOR_BUILDER_IMAGE"
    build loadgenerator "$LOADGENERATOR_IMAGE"
}

main "$@"
