# shellcheck shell=bash
# Shared by the tools/*.sh scripts that install Debian packages: source it, don't run it.

# apt-get, quiet unless it fails (then its output is shown). Waits up to 10 minutes for
# another apt to release its lock rather than failing at once.
apt_get() {
    local out
    if ! out=$(DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" 2>&1); then
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# has_candidate PACKAGE: whether the package lists know a version of PACKAGE to install.
has_candidate() {
    local policy
    policy=$(apt-cache policy "$1" 2>/dev/null) || return 1
    [[ $policy =~ Candidate:\ [0-9] ]]
}

# apt_install PACKAGE: install it without recommends. The package lists are refreshed only
# when they know no version of it, or when the install fails (stale lists naming versions
# the archive no longer has).
apt_install() {
    if ! has_candidate "$1"; then
        printf 'apt: updating the package lists (%s is not in them)\n' "$1" >&2
        apt_get update
    fi
    printf 'apt: installing %s (Debian) ...\n' "$1" >&2
    if ! apt_get install --no-install-recommends "$1"; then
        printf 'apt: install failed; refreshing the package lists and retrying\n' >&2
        apt_get update
        apt_get install --no-install-recommends "$1"
    fi
}
