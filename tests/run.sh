#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The project's single test command (CI runs it via .ci/run), as root on Debian 12:
#   1. installs the Debian packages it needs (apt-get only when one is missing),
#   2. builds with meson and runs the unit tests (meson test), then again under valgrind
#      (any memory error or leak fails them),
#   3. runs the integration suite (pytest, tests/integration) against build/regcache, with the
#      load test, and a short bounded run of every libFuzzer driver (tests/fuzz, clang build in
#      build-fuzz); its mirrors run with workers: 2, and the revalidation sequences run again
#      with workers: 1,
#   4. builds again with AddressSanitizer and UndefinedBehaviorSanitizer (build-asan) and runs
#      the unit tests and the integration suite against that binary (but the tests marked
#      `once` or `engines`), then with ThreadSanitizer (clang, build-tsan) the tests where event
#      loops hand work to each other; any sanitizer report fails the run,
#   5. prints one line "N passed, M failed" over every phase; exits non-zero on any failure.
# REGCACHE_SKIP_SANITIZERS=1 leaves out phase 4 (a quicker run while working).
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Test-only packages; the build's own come from packaging/bootstrap.sh.
TEST_PACKAGES=(docker-registry docker.io containerd skopeo python3-pytest python3-jwt
  python3-cryptography python3-yaml python3-hypothesis apache2-utils nginx openssl buildah umoci clang libclang-rt-14-dev
  valgrind chromium prometheus debhelper lintian dpkg-dev fakeroot man-db groff-base podman
  ceph-mon ceph-osd radosgw ceph-common)
PYTHON=/usr/bin/python3   # Debian's, which has the python3-* packages above
SUITE_TIMEOUT=${REGCACHE_SUITE_TIMEOUT:-2700}   # seconds for each pytest run

if ! packaging/bootstrap.sh deps "${TEST_PACKAGES[@]}"; then
  echo "apt-get failed to install the build and test dependencies" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

passed=0 failed=0 skipped=0
summary=()
# What failed, named (test ids; each sanitizer report's first lines): printed again at the end,
# beside the counts, so that the tail of a long run says what to look at.
failures=()

# count LABEL PASSED FAILED [SKIPPED]
count() {
  passed=$((passed + $2))
  failed=$((failed + $3))
  skipped=$((skipped + ${4:-0}))
  summary+=("$1: $2 passed, $3 failed${4:+, $4 skipped}")
}

# build DIR [meson options...]: 0 when DIR builds
build() {
  local dir=$1
  shift
  if [ -f "$dir/build.ninja" ]; then
    meson setup --reconfigure "$dir" "$@" >/dev/null || return 1
  else
    meson setup "$dir" "$@" >/dev/null || return 1
  fi
  meson compile -C "$dir"
}

# unit_tests LABEL DIR [meson test options...]
unit_tests() {
  local label=$1 dir=$2 log
  shift 2
  rm -f "$dir"/meson-logs/testlog-"$label"*.json
  meson test -C "$dir" --print-errorlogs --logbase "testlog-$label" "$@"
  # meson adds the wrapper's name to the log's name
  log=$(ls "$dir"/meson-logs/testlog-"$label"*.json 2>/dev/null | head -1)
  if [ -z "$log" ]; then
    count "$label" 0 1
    return
  fi
  local ok bad
  read -r ok bad < <("$PYTHON" - "$log" <<'EOF'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line).get("result")
        ok += r == "OK"
        bad += r not in ("OK", "SKIP")
print(ok, bad if ok + bad else 1)   # no test run counts as a failure
EOF
  )
  count "$label" "$ok" "$bad"
}

# pytest_suite LABEL PATHS... (environment from the caller)
pytest_suite() {
  local label=$1 junit
  shift
  junit=$(mktemp /tmp/regcache-junit.XXXXXX.xml)
  rm -f "$junit"
  timeout -k 30 "$SUITE_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" \
    --durations=30 --junitxml="$junit" "$@"
  echo "pytest exit status: $?"
  if [ ! -s "$junit" ]; then
    count "$label" 0 1   # pytest died or timed out before writing results
    return
  fi
  local ok bad skip names line
  names=$(mktemp /tmp/regcache-failed.XXXXXX)
  read -r ok bad skip < <("$PYTHON" - "$junit" "$names" <<'EOF'
import sys, xml.etree.ElementTree as ET
# One verdict per test case (a teardown error marks a passed call as failed, counted once).
root = ET.parse(sys.argv[1]).getroot()
ok = bad = skip = 0
names = open(sys.argv[2], "w")
for tc in root.iter("testcase"):
    tags = {child.tag for child in tc}
    if tags & {"failure", "error"}:
        bad += 1
        names.write(f"{tc.get('classname')}::{tc.get('name')}\n")
    elif "skipped" in tags:
        skip += 1
    else:
        ok += 1
names.close()  # before the counts: read as soon as they are printed
print(ok, bad if ok + bad + skip else bad + 1, skip)   # no test collected counts as a failure
EOF
  )
  while IFS= read -r line; do
    failures+=("$label failed: $line")
  done <"$names"
  rm -f "$junit" "$names"
  count "$label" "$ok" "$bad" "$skip"
}

echo "== build"
if build build; then
  echo "== unit tests"
  unit_tests unit build
  echo "== unit tests under valgrind"
  unit_tests valgrind build --timeout-multiplier 10 \
    --wrapper "valgrind --quiet --error-exitcode=99 --leak-check=full --show-leak-kinds=definite,indirect,possible --errors-for-leak-kinds=definite,indirect,possible"
else
  count build 0 1
fi

echo "== integration tests, load test and fuzzers"
pytest_suite integration tests/integration tests/fuzz

# The suite's mirrors run with workers: 2; the revalidation sequences again with one loop,
# where a request never changes loops.
echo "== sequences with workers: 1"
REGCACHE_TEST_WORKERS=1 pytest_suite one-loop tests/integration/test_sequences.py

# sanitizer_phase LABEL DIR CC "MESON OPTIONS" ENV_VAR OPTIONS PYTEST_ARGS...: builds DIR
# with CC and the meson options, runs the integration tests given against DIR/regcache with
# ENV_VAR=OPTIONS (reports written under a fresh directory), and counts every report as a
# failure. ASan's phase runs the unit tests too.
sanitizer_phase() {
  local label=$1 dir=$2 cc=$3 meson_options=$4 var=$5 options=$6 reports n
  shift 6
  reports=$(mktemp -d /tmp/regcache-"$label".XXXXXX)
  # shellcheck disable=SC2086 # the meson options are words
  if ! CC=$cc build "$dir" $meson_options; then
    count "$label-build" 0 1
    rm -rf "$reports"
    return
  fi
  export "$var=log_path=$reports/$label:$options"
  if [ "$label" = asan ]; then
    export UBSAN_OPTIONS="log_path=$reports/ubsan:print_stacktrace=1:halt_on_error=1"
    unit_tests asan-unit "$dir"
  fi
  REGCACHE_BIN=$dir/regcache REGCACHE_LOAD_SECONDS=20 pytest_suite "$label-integration" "$@"
  unset "$var" UBSAN_OPTIONS
  n=$(find "$reports" -type f | wc -l)
  if ((n)); then
    echo "$label reports:" >&2
    find "$reports" -type f -exec sh -c 'echo "--- $1"; head -80 "$1"' _ {} \; >&2
    local f line
    for f in "$reports"/*; do # its kind, and the first frames that name the project's code
      while IFS= read -r line; do
        failures+=("$label report: $line")
      done < <(grep -m 12 -E '^(==[0-9]+==ERROR|SUMMARY|Direct leak|Indirect leak)|#[0-9]+ .* in [a-z_]+ .*/(cache|http|registry|hosted|util|daemon|cluster|auth|upstream|prefetch|metrics|store|db)/' "$f")
    done
  fi
  count "$label-reports" 0 "$n"
  rm -rf "$reports"
}

if [ "${REGCACHE_SKIP_SANITIZERS:-0}" != 1 ]; then
  # The whole suite but what builds a package or image of its own or starts Ceph (`once`),
  # and what drives a real container engine (`engines`: dockerd, containerd, podman, buildah,
  # whose start-up is most of their time; the requests they make, the rest of the suite makes
  # too).
  echo "== AddressSanitizer + UndefinedBehaviorSanitizer build"
  sanitizer_phase asan build-asan cc "-Db_sanitize=address,undefined" \
    ASAN_OPTIONS "detect_leaks=1:abort_on_error=0" \
    -m "not once and not engines" tests/integration

  # ThreadSanitizer on the tests where loops hand connections, lessons and visits to each other
  echo "== ThreadSanitizer build (clang)"
  sanitizer_phase tsan build-tsan clang "-Db_sanitize=thread -Db_lundef=false" \
    TSAN_OPTIONS "halt_on_error=0:second_deadlock_stack=1" -m "not engines" \
    tests/integration/test_workers.py tests/integration/test_concurrent_pull.py \
    tests/integration/test_tls.py
fi

((${#failures[@]} == 0)) || printf '%s\n' "${failures[@]}"
printf '%s\n' "${summary[@]}"
echo "${passed} passed, ${failed} failed"
((failed == 0)) || exit 1
exit 0
