#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Fresh Debian 12 to a running mirror: installs what is missing, builds, and optionally serves.
#
#   packaging/bootstrap.sh serve [-c FILE]   install, build, run `regcache serve` in the foreground
#   packaging/bootstrap.sh build             install and build only (build/regcache)
#   packaging/bootstrap.sh deps [PKG...]     install the build dependencies and any PKG given
#
# Only Debian's own packages are used; apt-get runs only when something is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_PACKAGES=(build-essential pkg-config meson ninja-build libuv1-dev libcurl4-openssl-dev
                libssl-dev libsqlite3-dev libyaml-dev libcrypt-dev node-llhttp ca-certificates)

install_missing() {
    local missing=()
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "bootstrap: installing ${missing[*]}" >&2
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >&2
}

build() {
    if [ -f build/build.ninja ]; then
        meson setup --reconfigure build >/dev/null
    else
        meson setup build >/dev/null
    fi
    meson compile -C build >&2
}

cmd="${1:-serve}"
shift || true
case "$cmd" in
    deps)  install_missing "${BUILD_PACKAGES[@]}" "$@" ;;
    build) install_missing "${BUILD_PACKAGES[@]}"; build ;;
    serve) install_missing "${BUILD_PACKAGES[@]}"; build; exec build/regcache serve "$@" ;;
    *) echo "usage: $0 serve [-c FILE] | build | deps [PKG...]" >&2; exit 2 ;;
esac
