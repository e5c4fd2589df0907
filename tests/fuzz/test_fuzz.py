# SPDX-License-Identifier: Apache-2.0
"""A short, bounded libFuzzer run of every driver in fuzz/ (clang, ASan+UBSan), starting from the
committed seed corpora: a crash, a sanitizer report or a broken contract fails the test."""

import os
import shutil
import subprocess
import tempfile

import pytest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.join(ROOT, "build-fuzz")
TARGETS = ["route", "range", "challenge", "json", "reference", "config", "htpasswd", "token",
           "http", "accept", "logline", "daemon_json", "rules", "peer_auth", "via"]
SECONDS = int(os.environ.get("REGCACHE_FUZZ_SECONDS", "5"))


@pytest.fixture(scope="module")
def fuzz_build():
    env = dict(os.environ, CC="clang")
    if not os.path.exists(os.path.join(BUILD, "build.ninja")):
        r = subprocess.run(["meson", "setup", BUILD, "-Dfuzz=true", "-Db_sanitize=address,undefined",
                            "-Db_lundef=false"], cwd=ROOT, env=env, capture_output=True,
                           text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(["meson", "compile", "-C", BUILD], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return BUILD


@pytest.mark.parametrize("target", TARGETS)
def test_fuzz_driver(fuzz_build, target):
    corpus = tempfile.mkdtemp(prefix=f"regcache-fuzz-{target}-")
    try:
        seeds = os.path.join(ROOT, "fuzz", "corpus", target)
        for name in os.listdir(seeds):
            shutil.copy(os.path.join(seeds, name), corpus)
        r = subprocess.run([os.path.join(fuzz_build, "fuzz", f"fuzz_{target}"),
                            f"-max_total_time={SECONDS}", "-timeout=10", "-rss_limit_mb=2048",
                            corpus], capture_output=True, text=True, errors="replace",
                           timeout=SECONDS + 120)
        out = r.stdout + r.stderr
        assert r.returncode == 0, out[-4000:]
        assert "Done" in out and "ERROR" not in out, out[-4000:]
    finally:
        shutil.rmtree(corpus, ignore_errors=True)
