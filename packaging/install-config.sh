#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# meson install: put the example configuration in place as mirror.yml unless one exists.
set -e
dir="${DESTDIR:-}$1/regcache"
[ -e "$dir/mirror.yml" ] || cp "$dir/mirror.yml.example" "$dir/mirror.yml"
