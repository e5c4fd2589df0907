#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Builds the regcache container image in one command, from Debian packages only:
#
#   packaging/image/build.sh [--dist DIR] [--build-dir DIR] [--storage DIR] [--local]
#
# A release build of regcache (meson, --prefix=/usr) and nothing else but what it needs at run
# time, all taken from this machine's Debian packages: the shared libraries ldd names (with their
# packages' copyright files, and their dpkg status under /var/lib/dpkg/status.d/ for image
# scanners), /etc/ssl/certs/ca-certificates.crt (ca-certificates), /usr/share/zoneinfo
# (tzdata, without right/), an /etc/passwd and /etc/group with the user regcache (65532:65532),
# /var/lib/regcache owned by it and /etc/regcache/mirror.yml (mirror.yml.example with listen
# :5000). No shell, no package manager. One layer, committed with buildah from scratch.
#
# The image follows the registry:2 image's contract: EXPOSE 5000, VOLUME /var/lib/regcache,
# config /etc/regcache/mirror.yml, ENTRYPOINT ["regcache"], CMD ["serve", "-c",
# "/etc/regcache/mirror.yml"]; and it runs as USER 65532:65532 with a HEALTHCHECK of `regcache
# health`. HEALTHCHECK exists only in Docker's image format, so the image is committed as
# Docker schema2 (what `docker run` honours).
#
# Writes into --dist (default dist/):
#   regcache-image-VERSION.tar      docker-archive (`docker load -i`, `podman load -i`,
#                                   `skopeo copy docker-archive:...`): Docker format, HEALTHCHECK
#   regcache-image-VERSION.oci.tar  oci-archive of the same layer (OCI has no HEALTHCHECK field,
#                                   so it has none); for OCI-only tools (umoci, ctr import)
# and prints the sizes. --local also copies the image into this machine's containers-storage
# as localhost/regcache:VERSION (podman, buildah). buildah works in a storage of its own
# (--storage DIR, vfs driver; default a temporary one, removed at the end), so nothing global
# is touched otherwise.
#
# REGCACHE_IMAGE_SOURCE: the URL for org.opencontainers.image.source (default: git's origin).
# SOURCE_DATE_EPOCH (default: the time of the last commit) sets every file's time in the layer
# and the image's creation time, so the same commit builds the same layer.
set -euo pipefail
cd "$(dirname "$0")/../.."

USER_ID=65532   # see the README: above every distribution's system and login ranges
dist=dist build_dir=build-image storage="" local=0
while [ $# -gt 0 ]; do
    case "$1" in
        --dist) dist=$2; shift 2 ;;
        --build-dir) build_dir=$2; shift 2 ;;
        --storage) storage=$2; shift 2 ;;
        --local) local=1; shift ;;
        *) echo "usage: $0 [--dist DIR] [--build-dir DIR] [--storage DIR] [--local]" >&2; exit 2 ;;
    esac
done

packaging/bootstrap.sh deps buildah skopeo ca-certificates tzdata binutils

# -- a release build ---------------------------------------------------------------------------
if [ -f "$build_dir/build.ninja" ]; then
    meson setup --reconfigure "$build_dir" --buildtype=release --prefix=/usr >/dev/null
else
    meson setup "$build_dir" --buildtype=release --prefix=/usr >/dev/null
fi
meson compile -C "$build_dir" regcache >&2
binary=$build_dir/regcache
version=$("$binary" --version | awk '{print $2}')
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
# where the source is published: REGCACHE_IMAGE_SOURCE, else the clone's origin; the commit
# goes into org.opencontainers.image.revision
source_url=${REGCACHE_IMAGE_SOURCE:-$(git remote get-url origin 2>/dev/null || true)}
[ -n "$source_url" ] || source_url=unknown
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)

work=$(mktemp -d /tmp/regcache-image.XXXXXX)
cleanup() {
    if [ -n "${ctr:-}" ]; then "${B[@]}" rm "$ctr" >/dev/null 2>&1 || true; fi
    rm -rf "$work"
}
trap cleanup EXIT
[ -n "$storage" ] || storage=$work/storage
B=(buildah --root "$storage/root" --runroot "$storage/run" --storage-driver vfs)

# -- the root filesystem -----------------------------------------------------------------------
root=$work/rootfs
mkdir -p "$root"/{usr/bin,usr/lib,usr/sbin,etc/ssl/certs,etc/regcache,tmp,var/lib/dpkg/status.d}
mkdir -p "$root/usr/share/doc/regcache" "$root/usr/share/zoneinfo"
# merged /usr, as in Debian 12: the loader's path (/lib64/ld-linux-x86-64.so.2) resolves
for d in bin sbin lib lib64; do ln -s "usr/$d" "$root/$d"; done
mkdir -p "$root/usr/lib64"
chmod 1777 "$root/tmp"
install -m 0755 -s "$binary" "$root/usr/bin/regcache"

# The package that installed path: dpkg knows each file by the name its package ships it under,
# /lib/... or /usr/lib/..., which merged /usr makes the same file.
package_of() {
    local real=$(readlink -f "$1") p
    for p in "$1" "$real" "/usr$1" "${1#/usr}" "/usr$real" "${real#/usr}"; do
        dpkg-query -S "$p" 2>/dev/null | grep -v '^diversion' | head -1 | sed 's/: .*//' |
            grep . && return 0
    done
    echo "build.sh: no Debian package owns $1" >&2
    return 1
}

# every library the binary loads, and the loader, at its path under /usr
packages=()
for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    case "$lib" in /usr/*) dest=$root$lib ;; *) dest=$root/usr$lib ;; esac
    mkdir -p "$(dirname "$dest")"
    cp -L "$lib" "$dest"
    pkg=$(package_of "$lib")
    packages+=("$pkg")
done
cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
# tzdata without right/ (the same zones counting leap seconds, for clocks nobody runs)
tar -C /usr/share/zoneinfo --exclude=./right -cf - . | tar -C "$root/usr/share/zoneinfo" -xf -
packages+=(ca-certificates tzdata)

# what went in: each package's copyright, and its dpkg status for scanners (distroless-style)
for pkg in $(printf '%s\n' "${packages[@]}" | sort -u); do
    name=${pkg%%:*}
    mkdir -p "$root/usr/share/doc/$name"
    cp "/usr/share/doc/$name/copyright" "$root/usr/share/doc/$name/" 2>/dev/null || true
    dpkg-query -s "$pkg" > "$root/var/lib/dpkg/status.d/$name"
done
cp LICENSE "$root/usr/share/doc/regcache/LICENSE"

cat > "$root/etc/passwd" <<EOF
root:x:0:0:root:/root:/usr/sbin/nologin
regcache:x:$USER_ID:$USER_ID:regcache:/var/lib/regcache:/usr/sbin/nologin
EOF
cat > "$root/etc/group" <<EOF
root:x:0:
regcache:x:$USER_ID:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
sed -e 's/^listen: .*/listen: ":5000"/' -e 's|^storage: .*|storage: /var/lib/regcache|' \
    mirror.yml.example > "$root/etc/regcache/mirror.yml"
grep -q '^listen: ":5000"$' "$root/etc/regcache/mirror.yml"
grep -q '^storage: /var/lib/regcache$' "$root/etc/regcache/mirror.yml"
"$binary" check-config -c "$root/etc/regcache/mirror.yml" >&2
find "$root" -exec touch -h -d "@$epoch" {} +
# the volume's directory, owned by the image's user (copied on its own with --chown)
mkdir -p "$work/state/regcache"
touch -d "@$epoch" "$work/state/regcache"

# -- the image ---------------------------------------------------------------------------------
ctr=$("${B[@]}" from --format docker scratch)
"${B[@]}" copy "$ctr" "$root/" / >/dev/null
"${B[@]}" copy --chown "$USER_ID:$USER_ID" --chmod 0700 "$ctr" "$work/state/" /var/lib/ >/dev/null
"${B[@]}" config \
    --port 5000/tcp \
    --volume /var/lib/regcache \
    --entrypoint '["regcache"]' \
    --cmd '["serve", "-c", "/etc/regcache/mirror.yml"]' \
    --user "$USER_ID:$USER_ID" \
    --workingdir /var/lib/regcache \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --stop-signal SIGTERM \
    --healthcheck 'CMD regcache health -c /etc/regcache/mirror.yml' \
    --healthcheck-interval 30s --healthcheck-timeout 5s --healthcheck-start-period 5m \
    --healthcheck-retries 3 \
    --label org.opencontainers.image.title=regcache \
    --label "org.opencontainers.image.description=Pull-through caching mirror for container registries" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.revision=$revision" \
    --label org.opencontainers.image.licenses=Apache-2.0 \
    --label "org.opencontainers.image.created=$created" \
    "$ctr"
name=localhost/regcache:$version
"${B[@]}" commit --quiet --format docker --timestamp "$epoch" --rm "$ctr" "$name" >/dev/null
ctr=""

mkdir -p "$dist"
out=$dist/regcache-image-$version.tar
oci=$dist/regcache-image-$version.oci.tar
rm -f "$out" "$oci"
"${B[@]}" push --quiet "$name" "docker-archive:$out:regcache:$version" 2>/dev/null
"${B[@]}" push --quiet "$name" "oci-archive:$oci:$version" 2>/dev/null
if [ "$local" = 1 ]; then
    skopeo copy --quiet "docker-archive:$out" "containers-storage:$name"
fi

# -- sizes -------------------------------------------------------------------------------------
unpacked=$(du -sb --apparent-size "$root" | cut -f1)
layer=$(tar -xOf "$oci" "blobs/sha256/$(tar -xOf "$oci" index.json |
    sed 's/.*"digest":"sha256:\([0-9a-f]*\)".*/\1/' | xargs -I{} tar -xOf "$oci" blobs/sha256/{} |
    sed 's/.*"layers":\[{[^}]*"digest":"sha256:\([0-9a-f]*\)".*/\1/')" | wc -c)
echo "image: $name, $(printf '%s\n' "${packages[@]}" | sort -u | wc -l) Debian packages"
echo "  $out (docker-archive, $(stat -c %s "$out") bytes)"
echo "  $oci (oci-archive, $(stat -c %s "$oci") bytes)"
echo "  compressed layer: $layer bytes; unpacked: $unpacked bytes"
