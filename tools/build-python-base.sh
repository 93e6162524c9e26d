#!/usr/bin/env bash
# Build the local Python base image the service images are built FROM, without a registry:
#
#   storefront-python-base:3.11   Debian bookworm (debootstrap --variant=minbase) with
#                                 Debian's python3 (3.11), python3-venv and ca-certificates
#
# The Dockerfile defaults to the public python:3.11-slim-bookworm; here no registry answers,
# so tools/build-images.sh passes this image with --build-arg BASE_IMAGE=.
#
# Two tarballs are cached in $STOREFRONT_CACHE_DIR (default: .cache/python-base in the repo):
#   minbase-<key>.tar      the bare debootstrap rootfs (key: suite, variant, mirror, debootstrap
#                          version), so a change to the Python layer does not debootstrap again
#   python-base-<key>.tar  the finished rootfs (key: also this script), imported as it is when
#                          the image was removed
# The image also trusts the certificate authorities this machine added locally
# ($STOREFRONT_EXTRA_CA_DIR, default /usr/local/share/ca-certificates, as update-ca-certificates
# reads them), as a company's base image trusts its TLS proxy: `pip install` in `docker build`
# goes through the same proxy as the host's. STOREFRONT_EXTRA_CA_DIR= (empty) adds none.
#
# The image is rebuilt only when missing or built from other inputs (this script and those
# certificates; label org.storefront.build-inputs). FORCE=1 rebuilds from the cached minbase;
# delete the cache directory for a build from scratch. Needs root (debootstrap, chroot);
# installs debootstrap with apt when missing.
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(dirname "$(dirname "$SCRIPT_PATH")")"
readonly SCRIPT_PATH REPO_ROOT
readonly IMAGE="${STOREFRONT_PYTHON_BASE_IMAGE:-storefront-python-base:3.11}"
readonly CACHE_DIR="${STOREFRONT_CACHE_DIR:-$REPO_ROOT/.cache}/python-base"
readonly SUITE="bookworm"
readonly MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
readonly SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
readonly PACKAGES=(python3 python3-venv ca-certificates)
readonly INPUTS_LABEL="org.storefront.build-inputs"
readonly LOCK_FILE="${STOREFRONT_PYTHON_BASE_LOCK:-/tmp/storefront-build-python-base.lock}"
readonly PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

readonly EXTRA_CA_DIR="${STOREFRONT_EXTRA_CA_DIR-/usr/local/share/ca-certificates}"
EXTRA_CAS=()
if [[ -n $EXTRA_CA_DIR && -d $EXTRA_CA_DIR ]]; then
    mapfile -t EXTRA_CAS < <(find "$EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -type f | sort)
fi
readonly EXTRA_CAS
INPUTS_HASH="$(cat "$SCRIPT_PATH" ${EXTRA_CAS[@]+"${EXTRA_CAS[@]}"} | sha256sum | cut -c1-32)"
readonly INPUTS_HASH
FORCE="${FORCE:-0}"
WORK_DIR=""
MOUNTED=()

log() { printf 'build-python-base: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cleanup() {
    local mount_point
    for mount_point in "${MOUNTED[@]}"; do
        umount -R -l "$mount_point" 2>/dev/null || true
    done
    [[ -n $WORK_DIR ]] || return 0
    if grep -qF " $WORK_DIR/" /proc/mounts; then
        # Never rm -rf through a bind mount of the host's /dev.
        log "warning: something is still mounted under $WORK_DIR; not removing it"
        return 0
    fi
    rm -rf "$WORK_DIR"
}

image_is_current() { image_built_from "$IMAGE" "$INPUTS_LABEL" "$INPUTS_HASH"; }

# shellcheck source=tools/lib/apt.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/apt.sh"
# shellcheck source=tools/lib/image.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/image.sh"

ensure_debootstrap() {
    command -v debootstrap >/dev/null 2>&1 && return 0
    apt_install debootstrap
}

# tar_rootfs ROOTFS TARBALL: the rootfs as a tarball, without the pseudo-filesystems' contents.
tar_rootfs() {
    local rootfs=$1 tarball=$2
    tar --numeric-owner --xattrs --exclude='./proc/*' --exclude='./sys/*' --exclude='./dev/*' \
        -C "$rootfs" -cf "$tarball.partial" .
    mv "$tarball.partial" "$tarball"
}

# The bare debootstrap rootfs, cached: about 35 s the first time.
minbase_tarball() {
    local key tarball rootfs
    key="$(printf '%s\n' "$SUITE" minbase "$MIRROR" "$(debootstrap --version)" | sha256sum | cut -c1-16)"
    tarball="$CACHE_DIR/minbase-$key.tar"
    if [[ ! -s $tarball ]]; then
        rootfs="$WORK_DIR/minbase"
        log "debootstrap --variant=minbase $SUITE from $MIRROR (cached afterwards in $CACHE_DIR)"
        debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$WORK_DIR/debootstrap.log" 2>&1 || {
            tail -n 30 "$WORK_DIR/debootstrap.log" >&2
            die "debootstrap failed"
        }
        rm -f "$rootfs"/var/cache/apt/archives/*.deb
        tar_rootfs "$rootfs" "$tarball"
        rm -rf "$rootfs"
        # Older minbase tarballs (another mirror or debootstrap) are of no further use.
        find "$CACHE_DIR" -maxdepth 1 -name 'minbase-*.tar' ! -name "minbase-$key.tar" -delete
    fi
    printf '%s\n' "$tarball"
}

# quietly COMMAND...: run it, showing its output only when it fails.
quietly() {
    local out
    if ! out=$("$@" 2>&1); then
        printf '%s\n' "$out" >&2
        die "failed: ${*: -3}"
    fi
}

in_chroot() { chroot "$1" /usr/bin/env -i "$PATH_ENV" LANG=C.UTF-8 DEBIAN_FRONTEND=noninteractive "${@:2}"; }

# Python and its certificates on top of the minbase, with the security updates, and then
# everything an image does not need (package lists, caches, docs, man pages, logs) removed.
python_rootfs() {
    local rootfs=$1 minbase=$2
    mkdir -p "$rootfs"
    tar --numeric-owner --xattrs -xpf "$minbase" -C "$rootfs"

    # Like Debian's own slim images: later apt installs skip docs and man pages too.
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/*.bin || true"; };
EOF
    cat >"$rootfs/etc/apt/sources.list" <<EOF
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
EOF
    if ((${#EXTRA_CAS[@]})); then
        # ca-certificates' postinst (update-ca-certificates) adds them to the bundle.
        mkdir -p "$rootfs/usr/local/share/ca-certificates"
        cp "${EXTRA_CAS[@]}" "$rootfs/usr/local/share/ca-certificates/"
    fi
    cp /etc/resolv.conf "$rootfs/etc/resolv.conf"
    mount -t proc proc "$rootfs/proc"
    MOUNTED+=("$rootfs/proc")
    mount --rbind /dev "$rootfs/dev" # /dev/null and /dev/pts for apt and dpkg
    mount --make-rslave "$rootfs/dev"
    MOUNTED+=("$rootfs/dev")

    quietly in_chroot "$rootfs" apt-get -q -o APT::Sandbox::User=root update
    quietly in_chroot "$rootfs" apt-get -q -y -o APT::Sandbox::User=root upgrade
    quietly in_chroot "$rootfs" apt-get -q -y -o APT::Sandbox::User=root install "${PACKAGES[@]}"
    in_chroot "$rootfs" python3 -c 'import ensurepip, ssl, venv' ||
        die "python3 in the new rootfs lacks ensurepip, ssl or venv"

    umount -R "$rootfs/dev"
    umount "$rootfs/proc"
    MOUNTED=()
    : >"$rootfs/etc/resolv.conf" # Docker provides its own
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/cache/debconf/*-old \
        "$rootfs"/var/lib/dpkg/*-old "$rootfs"/var/log/* "$rootfs"/tmp/* "$rootfs"/root/.cache
    find "$rootfs/usr/share/doc" -mindepth 1 ! -type d ! -name copyright -delete
    find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
    rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/*
}

import_base() {
    local tarball=$1 old_id new_id version
    old_id="$(image_id "$IMAGE")"
    new_id="$(docker import \
        --change "ENV ${PATH_ENV}" \
        --change 'ENV LANG=C.UTF-8' \
        --change 'CMD ["python3"]' \
        --change "LABEL ${INPUTS_LABEL}=${INPUTS_HASH} org.opencontainers.image.title=storefront-python-base org.opencontainers.image.description=\"Debian ${SUITE} minbase with Debian's python3, built locally by tools/build-python-base.sh\"" \
        --message "storefront local Python base (Debian ${SUITE} minbase + ${PACKAGES[*]})" \
        "$tarball" "$IMAGE")"
    if ! version="$(docker run --rm --network none "$IMAGE" python3 -c \
        'import ssl, sys, venv; print(sys.version.split()[0], ssl.OPENSSL_VERSION)')"; then
        docker image rm "$IMAGE" >/dev/null 2>&1 || true
        die "the freshly imported $IMAGE does not run python3"
    fi
    remove_replaced "$old_id" "$new_id"
    log "built $IMAGE: $(image_size "$IMAGE"), Python $version"
}

main() {
    docker info >/dev/null 2>&1 ||
        die "no Docker engine answers: run tools/ensure-docker.sh first (or \`make images\`)"
    if [[ $FORCE != 1 ]] && image_is_current; then
        return 0
    fi
    if ((EUID != 0)); then
        # Like the Redis images: locally the image tests then skip with the reason; in CI
        # (root on a fresh machine) this does not happen.
        log "building $IMAGE needs root (debootstrap and chroot): not building it."
        log "On a machine that can pull, STOREFRONT_BASE_IMAGE=python:3.11-slim-bookworm make images"
        return 0
    fi

    mkdir -p "$CACHE_DIR"
    exec 9>"$LOCK_FILE"
    flock -w 900 9 || die "timed out waiting for ${LOCK_FILE}"
    if [[ $FORCE != 1 ]] && image_is_current; then
        return 0 # built by the run we waited for
    fi

    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/storefront-python-base.XXXXXX")"
    trap cleanup EXIT
    local key final minbase
    key="$(printf '%s\n' "$INPUTS_HASH" "$MIRROR" "$SECURITY_MIRROR" | sha256sum | cut -c1-16)"
    final="$CACHE_DIR/python-base-$key.tar"
    if [[ $FORCE == 1 || ! -s $final ]]; then
        ensure_debootstrap
        minbase="$(minbase_tarball)"
        log "installing ${PACKAGES[*]} into the rootfs (chroot apt-get)"
        python_rootfs "$WORK_DIR/rootfs" "$minbase"
        tar_rootfs "$WORK_DIR/rootfs" "$final"
        rm -rf "$WORK_DIR/rootfs"
        find "$CACHE_DIR" -maxdepth 1 -name 'python-base-*.tar' ! -name "python-base-$key.tar" -delete
    else
        log "importing the cached rootfs $final"
    fi
    import_base "$final"
}

main "$@"
