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
