#!/usr/bin/env bash
# The project's single test command (CI runs it via .ci/run), as root on Debian 12:
#   1. installs the Debian packages it needs (apt-get only when one is missing),
#   2. builds with meson and runs the unit tests (meson test),
#   3. runs the integration suite (pytest, tests/integration) against build/regcache and a short
#      bounded run of every libFuzzer driver (tests/fuzz, a clang build in build-fuzz),
#   4. prints one line "N passed, M failed" over both phases; exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Test-only packages; the build's own come from packaging/bootstrap.sh.
TEST_PACKAGES=(docker-registry docker.io containerd skopeo python3-pytest python3-jwt
  python3-cryptography python3-yaml apache2-utils nginx openssl buildah clang libclang-rt-14-dev)
PYTHON=/usr/bin/python3   # Debian's, which has the python3-* packages above
SUITE_TIMEOUT=${REGCACHE_SUITE_TIMEOUT:-1500}   # seconds for the whole pytest run

if ! packaging/bootstrap.sh deps "${TEST_PACKAGES[@]}"; then
  echo "apt-get failed to install the build and test dependencies" >&2
  echo "0 passed, 1 failed"
  exit 1
fi

unit_pass=0 unit_fail=0 it_pass=0 it_fail=0 it_skip=0 build_ok=1

echo "== build"
if [ -f build/build.ninja ]; then
  meson setup --reconfigure build || build_ok=0
else
  meson setup build || build_ok=0
fi
if ((build_ok)); then meson compile -C build || build_ok=0; fi

echo "== unit tests"
testlog=build/meson-logs/testlog.json
rm -f "$testlog"
if ((build_ok)); then
  meson test -C build --print-errorlogs
fi
if [ -f "$testlog" ]; then
  read -r unit_pass unit_fail < <("$PYTHON" - "$testlog" <<'EOF'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    if line.strip():
        r = json.loads(line).get("result")
        ok += r == "OK"
        bad += r not in ("OK", "SKIP")
print(ok, bad)
EOF
  )
fi
((build_ok)) || unit_fail=$((unit_fail + 1))   # the build itself counts as one failure

echo "== integration tests"
junit=$(mktemp /tmp/regcache-junit.XXXXXX.xml)
rm -f "$junit"
timeout -k 30 "$SUITE_TIMEOUT" "$PYTHON" -m pytest -q -p no:cacheprovider -o addopts="" \
  --junitxml="$junit" tests/integration tests/fuzz
echo "pytest exit status: $?"
if [ -s "$junit" ]; then
  read -r it_pass it_fail it_skip < <("$PYTHON" - "$junit" <<'EOF'
import sys, xml.etree.ElementTree as ET
# One verdict per test case (a teardown error marks a passed call as failed, counted once).
root = ET.parse(sys.argv[1]).getroot()
ok = bad = skip = 0
for tc in root.iter("testcase"):
    tags = {child.tag for child in tc}
    if tags & {"failure", "error"}:
        bad += 1
    elif "skipped" in tags:
        skip += 1
    else:
        ok += 1
print(ok, bad if ok + bad + skip else bad + 1, skip)   # no test collected counts as a failure
EOF
  )
else
  it_fail=$((it_fail + 1))   # pytest died or timed out before writing results
fi
rm -f "$junit"

passed=$((unit_pass + it_pass))
failed=$((unit_fail + it_fail))
echo "unit: ${unit_pass} passed, ${unit_fail} failed; integration: ${it_pass} passed, ${it_fail} failed, ${it_skip} skipped"
echo "${passed} passed, ${failed} failed"
((failed == 0)) || exit 1
exit 0
