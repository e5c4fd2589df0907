# SPDX-License-Identifier: Apache-2.0
"""Process lifecycle: graceful SIGTERM with a download in flight, check-config diagnostics and
--version."""

import hashlib
import http.client
import os
import re
import signal
import threading

import pytest

import procs
from helpers import wait_until
from mirror import regcache
from slowproxy import SlowProxy


def test_sigterm_lets_inflight_download_finish(mirror_factory, up, make_image, push):
    """SIGTERM while a slow (1 MiB/s upstream) cold 4 MiB download is in flight: the mirror
    is no longer ready and answers new requests 503 (probes still get their answer), the
    in-flight response completes with the right bytes, and the process exits 0 within
    shutdown_grace."""
    img = push(make_image(70, (4 * 1024 * 1024,)), up, "library/slow", "v1")
    layer = img.layer_digests[0]
    proxy = SlowProxy(up.port, rate=1024 * 1024)
    try:
        mirror = mirror_factory([{"name": "docker.io", "url": proxy.url}],
                                extra={"timeouts": {"shutdown_grace": "60s"}})
        got = {"n": 0}
        result = {}

        def download():
            conn = http.client.HTTPConnection("127.0.0.1", mirror.port, timeout=90)
            try:
                conn.request("GET", f"/v2/library/slow/blobs/{layer}")
                resp = conn.getresponse()
                h = hashlib.sha256()
                while True:
                    b = resp.read(16384)
                    if not b:
                        break
                    h.update(b)
                    got["n"] += len(b)
                result["status"], result["digest"] = resp.status, "sha256:" + h.hexdigest()
            except Exception as e:  # noqa: BLE001
                result["error"] = repr(e)
            finally:
                conn.close()

        t = threading.Thread(target=download)
        t.start()
        wait_until(lambda: got["n"] >= 256 * 1024, timeout=30, what="the download to start")
        assert got["n"] < len(img.blobs[layer]), \
            "the whole blob arrived before SIGTERM could be sent (is the mirror streaming?)"
        proc = mirror.proc
        proc.send_signal(signal.SIGTERM)
        wait_until(lambda: procs.http_status(mirror.port, "/readyz", timeout=1) == 503,
                   timeout=10, what="the mirror to say it is not ready")
        assert procs.http_status(mirror.port, timeout=1) == 503  # new registry requests
        assert t.is_alive() or result.get("status") == 200
        t.join(90)
        assert result == {"status": 200, "digest": layer}, result
        assert got["n"] == len(img.blobs[layer])
        assert proc.wait(60) == 0
        mirror.proc = None  # already stopped; the fixture has nothing left to do
    finally:
        proxy.close()


BAD_CONFIGS = [
    ("listen: 127.0.0.1:5000\nstorage: /tmp/x\ncache:\n  revalidate_after: banana\n",
     4, "revalidate_after"),
    ("listen: 127.0.0.1:5000\nstorage: /tmp/x\nbogus_key: 1\n", 3, "bogus_key"),
    ("listen: 127.0.0.1:5000\nstorage: /tmp/x\nupstreams:\n  - name: docker.io\n"
     "    url: http://127.0.0.1:1\n    colour: blue\n", 6, "colour"),
]


@pytest.mark.parametrize("text,line,key", BAD_CONFIGS, ids=["duration", "unknown", "nested"])
def test_check_config_reports_file_line_and_key(tmp_dir, text, line, key):
    """check-config on a bad file exits non-zero naming the file, the line and the key."""
    path = os.path.join(tmp_dir, "bad-config.yml")
    with open(path, "w") as f:
        f.write(text)
    p = regcache("check-config", "-c", path)
    out = p.stdout + p.stderr
    assert p.returncode != 0, out
    assert "bad-config.yml" in out, out
    assert re.search(rf"\b{line}\b", out), f"line {line} not in: {out}"
    assert key in out, out


def test_check_config_accepts_good_file(mirror_factory, up):
    """check-config exits 0 on the configuration the suite itself uses."""
    m = mirror_factory([up], start=False)
    p = regcache("check-config", "-c", m.config_path)
    assert p.returncode == 0, p.stdout + p.stderr


def test_serve_refuses_bad_config(tmp_dir):
    """serve with a bad configuration exits non-zero instead of serving."""
    path = os.path.join(tmp_dir, "bad.yml")
    with open(path, "w") as f:
        f.write(BAD_CONFIGS[0][0])
    p = regcache("serve", "-c", path, timeout=15)
    assert p.returncode != 0
    assert "bad.yml" in p.stdout + p.stderr


def test_version():
    """--version prints a version number and exits 0."""
    p = regcache("--version")
    assert p.returncode == 0, p.stderr
    assert re.search(r"\d+\.\d+\.\d+", p.stdout + p.stderr), p.stdout + p.stderr
