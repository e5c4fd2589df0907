#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the Debian package: dist/regcache_<version>_<arch>.deb, then checks it with lintian
# (any error or warning fails the build).
#
#   packaging/build-deb.sh
#
# Installs what the build needs (Debian packages only), builds in a temporary copy of the
# tree (packaging/debian goes to its root as debian/), so the worktree is never written but
# for dist/. The version is meson.build's; packaging/debian/changelog must name the same.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

packaging/bootstrap.sh deps debhelper lintian dpkg-dev fakeroot python3 pkgconf

version=$(sed -n "s/^ *version : '\([^']*\)'.*/\1/p" meson.build | head -1)
changelog_version=$(dpkg-parsechangelog -l packaging/debian/changelog -S Version)
if [ "$version" != "$changelog_version" ]; then
    echo "build-deb: meson.build says $version, packaging/debian/changelog $changelog_version:" \
         "add a changelog entry for $version" >&2
    exit 1
fi
arch=$(dpkg-architecture -q DEB_HOST_ARCH)

work=$(mktemp -d /tmp/regcache-deb.XXXXXX)
trap 'rm -rf "$work"' EXIT
src="$work/regcache-$version"
mkdir "$src"
# the tracked files as they are now (edits not yet committed included), no build directories
git ls-files -z --cached --others --exclude-standard |
    tar --null --files-from=- --create --file=- | tar --extract --file=- --directory="$src"
cp -a packaging/debian "$src/debian"

(cd "$src" && dpkg-buildpackage -b -us -uc)

deb="regcache_${version}_${arch}.deb"
mkdir -p dist
cp "$work/$deb" "dist/$deb"
echo "build-deb: dist/$deb" >&2

lintian --fail-on error,warning --display-info --suppress-tags-from-file /dev/null "dist/$deb"
