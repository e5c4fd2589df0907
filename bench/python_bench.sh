# SPDX-License-Identifier: Apache-2.0
# Sourced by the bench/*.sh wrappers of one Python bench each:
#   python_bench NAME LIMIT SCRIPT "EXTRA PACKAGES" [ARGS...]
# installs what is missing (Debian packages only), builds a release binary in build-bench/,
# runs SCRIPT with ARGS under a LIMIT-second bound in a temporary directory, and kills every
# process it started on exit (those SCRIPT recorded in the directory's `pids` too).

python_bench() {
  local name=$1 limit=$2 script=$3 extra=$4
  shift 4
  PYTHON=/usr/bin/python3
  # shellcheck disable=SC2086 # the extra packages are words
  packaging/bootstrap.sh deps docker-registry skopeo wrk $extra procps \
    python3-yaml python3-jwt python3-cryptography >&2
  if [ ! -f build-bench/build.ninja ]; then
    meson setup build-bench --buildtype=release >/dev/null
  fi
  meson compile -C build-bench regcache >/dev/null
  ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

  TMP=$(mktemp -d "/tmp/regcache-$name-bench.XXXXXX")
  BENCH_PID=
  trap python_bench_cleanup EXIT
  trap 'exit 130' INT TERM

  REGCACHE_BIN="${REGCACHE_BENCH_BIN:-$PWD/build-bench/regcache}" \
    timeout -s TERM -k 20 "$limit" "$PYTHON" "$script" --tmp "$TMP" "$@" &
  BENCH_PID=$!
  wait "$BENCH_PID"
}

python_bench_cleanup() {
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
