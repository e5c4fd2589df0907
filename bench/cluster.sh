#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# A cluster of three replicas against a single node on 127.0.0.1: cold pulls spread over the
# replicas, a replica's first pull of what its members hold, and blob hits; prints tables
# with the ratios to the single node.
#
#   bench/cluster.sh [--seconds N] [--rounds R]     (default 3 s per wrk run, median of 3)
#
# Installs what is missing (Debian packages only), builds a release binary in build-bench/
# and kills every process it started on exit (bench/python_bench.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

. bench/python_bench.sh
python_bench cluster 600 bench/cluster.py "" "$@"
