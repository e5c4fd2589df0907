#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Blob hits through packaging/load-balancer/haproxy.cfg in front of two regcache replicas,
# against one replica alone and HAProxy in front of one, on 127.0.0.1; prints a table with
# the ratios to one replica.
#
#   bench/lb.sh [--seconds N] [--rounds R]     (default 3 s per wrk run, median of 3)
#
# Installs what is missing (Debian packages only), builds a release binary in build-bench/
# and kills every process it started on exit (bench/python_bench.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. bench/python_bench.sh
python_bench lb 300 bench/lb.py "haproxy" "$@"
