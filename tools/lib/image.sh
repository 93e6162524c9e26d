# shellcheck shell=bash
# Shared by the tools/*.sh scripts that build local images: source it, don't run it.

# image_id TAG: the image's id; nothing when there is no such image.
image_id() { docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true; }

# image_size TAG: the image's size, for a log line ("171.8 MB").
image_size() { docker image inspect --format '{{.Size}}' "$1" | awk '{printf "%.1f MB", $1 / 1e6}'; }

# image_built_from TAG LABEL HASH: whether the image exists and its LABEL says HASH (the
# inputs it was built from), so that a rebuild can be skipped.
image_built_from() {
    local have
    have="$(docker image inspect --format "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null)" ||
        return 1
    [[ $have == "$3" ]]
}

# remove_replaced OLD_ID NEW_ID: remove the image a rebuild replaced, with its layers; one
# still used by a container is kept.
remove_replaced() {
    if [[ -n $1 && $1 != "$2" ]]; then
        docker image rm "$1" >/dev/null 2>&1 || true
    fi
}
