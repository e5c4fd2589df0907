#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A cluster of three replicas against a single node on 127.0.0.1: cold pulls spread over the
# replicas, a replica's first pull of what its members hold, and blob hits; prints tables
# with the ratios to the single node.
#
#   bench/cluster.sh [--seconds N] [--rounds R]     (default 3 s per wrk run, median of 3)
#
# Installs what is missing (Debian packages only), builds a release binary in build-bench/
# and kills every process it started on exit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PYTHON=/usr/bin/python3
packaging/bootstrap.sh deps docker-registry skopeo wrk procps \
  python3-yaml python3-jwt python3-cryptography >&2
if [ ! -f build-bench/build.ninja ]; then
  meson setup build-bench --buildtype=release >/dev/null
fi
meson compile -C build-bench regcache >/dev/null
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

TMP=$(mktemp -d /tmp/regcache-cluster-bench.XXXXXX)
BENCH_PID=
cleanup() {
  if [ -n "$BENCH_PID" ] && kill -0 "$BENCH_PID" 2>/dev/null; then
    kill -TERM "$BENCH_PID" 2>/dev/null || true
    sleep 1
    kill -KILL -- "-$BENCH_PID" 2>/dev/null || true
  fi
  if [ -f "$TMP/pids" ]; then
    while read -r pgid; do kill -KILL -- "-$pgid" 2>/dev/null || true; done <"$TMP/pids"
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

REGCACHE_BIN="${REGCACHE_BENCH_BIN:-$PWD/build-bench/regcache}" \
  timeout -s TERM -k 20 600 "$PYTHON" bench/cluster.py --tmp "$TMP" "$@" &
BENCH_PID=$!
wait "$BENCH_PID"
